-- Completion webhooks: where to POST a job when it reaches a terminal state.
ALTER TABLE jobs ADD COLUMN callback_url text;
ALTER TABLE jobs_archive ADD COLUMN callback_url text;

-- sweep: queued jobs that have waited past their run_at (a Cloud Task may have been lost).
CREATE INDEX jobs_waiting_idx ON jobs (run_at) WHERE job_status = 'queued';
