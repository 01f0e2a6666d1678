-- The webhook outbox: one row per delivery owed, written by the transition that ends a job
-- with a callback, in that transition's transaction. A crash after the commit loses nothing:
-- the row is delivered by the next drain (the end of a process invocation, a sweep tick, or
-- a Cloud Task). No foreign key: a delivery may outlive its job's move to the archive.
CREATE TABLE webhook_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          uuid NOT NULL,
    event_type      text NOT NULL,
    callback_url    text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    -- When a drainer may take it: now for a new row, later for a retry, and, while a drainer
    -- holds it, the end of that drainer's lease (a drainer that crashed gives it back then).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claim_token     uuid,
    last_error      text,
    gave_up_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (next_attempt_at) WHERE gave_up_at IS NULL;

-- outbox_add: a trigger rather than a step in each statement, so that every transition into a
-- finished state writes its row, whichever statement makes it (complete, fail, finish
-- cancelled, cancel of a queued job, sweep) and whichever is added later. Only a change of
-- status fires it: a finished job never changes status again, so each job owes one delivery.
CREATE FUNCTION outbox_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_outbox (job_id, event_type, callback_url)
    VALUES (NEW.id, 'job.' || NEW.job_status, NEW.callback_url);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_outbox_add AFTER UPDATE OF job_status ON jobs
    FOR EACH ROW
    WHEN (NEW.callback_url IS NOT NULL
          AND NEW.job_status IN ('completed', 'failed', 'cancelled')
          AND OLD.job_status IS DISTINCT FROM NEW.job_status)
    EXECUTE FUNCTION outbox_add();
