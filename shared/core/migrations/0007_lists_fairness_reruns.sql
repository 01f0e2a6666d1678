-- Job lists, fair claiming across tenants, re-runs and archive purging.

-- Re-runs: a job that repeats a failed or cancelled one names it. Added to the archive too,
-- in the same place: archiving copies rows whole (INSERT INTO jobs_archive SELECT * ...).
ALTER TABLE jobs ADD COLUMN rerun_of uuid;
ALTER TABLE jobs_archive ADD COLUMN rerun_of uuid;

-- list: one tenant's jobs, newest first, live and archived; and every tenant's (admin).
CREATE INDEX jobs_tenant_created_idx ON jobs (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_archive_tenant_created_idx ON jobs_archive (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_archive_created_idx ON jobs_archive (created_at DESC, id DESC);

-- fair claim: the tenants with queued jobs (a loose index scan) and each one's next job.
-- It replaces the global claim order of jobs_claim_idx.
CREATE INDEX jobs_tenant_claim_idx ON jobs (tenant, priority DESC, run_at, id) WHERE job_status = 'queued';
DROP INDEX jobs_claim_idx;
-- fair claim: how many jobs a tenant has running, and when it was last served.
CREATE INDEX jobs_tenant_running_idx ON jobs (tenant) WHERE job_status = 'running';
CREATE INDEX jobs_tenant_processed_idx ON jobs (tenant, processed_at DESC) WHERE processed_at IS NOT NULL;

-- purge: archived jobs by age (ARCHIVE_RETENTION_DAYS).
CREATE INDEX jobs_archive_finished_idx ON jobs_archive (finished_at);
