-- Tenants: every job belongs to the caller that enqueued it (API_TOKEN alone is the tenant
-- "default"; API_TOKENS names more). Idempotency keys are scoped to the tenant, so one
-- caller's key can never name, or squat, another caller's job.
ALTER TABLE jobs ADD COLUMN tenant text NOT NULL DEFAULT 'default'
    CHECK (length(tenant) BETWEEN 1 AND 100);
ALTER TABLE jobs_archive ADD COLUMN tenant text NOT NULL DEFAULT 'default';

ALTER TABLE jobs DROP CONSTRAINT jobs_idempotency_key_key;
CREATE UNIQUE INDEX jobs_tenant_idempotency_key_idx ON jobs (tenant, idempotency_key);
