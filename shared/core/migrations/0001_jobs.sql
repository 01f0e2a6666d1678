-- The job table, its append-only event log, and the archive that retention moves into.

CREATE TABLE jobs (
    -- Random, never sequential: the id is the capability token of the status endpoint.
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind                text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    job_status          text NOT NULL DEFAULT 'queued'
                        CHECK (job_status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    payload             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    result              jsonb,
    error               text,
    progress            smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    current_step        text,
    priority            integer NOT NULL DEFAULT 0,
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_at              timestamptz NOT NULL DEFAULT now(),
    processed_at        timestamptz,
    finished_at         timestamptz,
    last_heartbeat      timestamptz,
    idempotency_key     text UNIQUE,
    -- The lease: a fresh token per claim. Every write of a running job must present it.
    worker_token        uuid,
    cancel_requested_at timestamptz,
    -- The sequence number of the newest row in job_events for this job. Bumping it takes
    -- the row lock, so events commit in sequence order and a reader never sees a gap fill in.
    last_event_seq      bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- claim: the next due queued job, highest priority first, then oldest. Partial, so that
-- finished rows (the vast majority) never enter the scan.
CREATE INDEX jobs_claim_idx ON jobs (priority DESC, run_at, id) WHERE job_status = 'queued';

-- sweep: running jobs by heartbeat age.
CREATE INDEX jobs_stalled_idx ON jobs (last_heartbeat) WHERE job_status = 'running';

-- retention: finished jobs by age.
CREATE INDEX jobs_finished_idx ON jobs (finished_at)
    WHERE job_status IN ('completed', 'failed', 'cancelled');

CREATE TABLE job_events (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    kind       text NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- Status streams wait on this channel instead of polling; the payload is "<job id>:<seq>".
CREATE FUNCTION notify_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', NEW.job_id::text || ':' || NEW.seq::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION notify_job_event();

CREATE TABLE jobs_archive (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE jobs_archive ADD PRIMARY KEY (id);

CREATE TABLE job_events_archive (LIKE job_events INCLUDING DEFAULTS);
ALTER TABLE job_events_archive ADD PRIMARY KEY (job_id, seq);
