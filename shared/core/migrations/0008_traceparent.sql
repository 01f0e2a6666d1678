-- Traces: the W3C traceparent of the enqueue that made the job, so that its Cloud Task, every
-- attempt and every retry join the same trace (see shared/core/tracing.py). NULL when the
-- enqueue carried none and tracing was off.
ALTER TABLE jobs ADD COLUMN traceparent text CHECK (length(traceparent) <= 55);
ALTER TABLE jobs_archive ADD COLUMN traceparent text;
