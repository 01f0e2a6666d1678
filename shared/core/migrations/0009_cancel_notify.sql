-- Cancel by notification: a cancel request on a running job notifies 'job_cancel' with the
-- job's id, and the process instance running it (which listens on one connection) stops the
-- handler at once, instead of each running job reading its row every half second.
CREATE FUNCTION notify_cancel_requested() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_cancel', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_cancel_notify AFTER UPDATE OF cancel_requested_at ON jobs
    FOR EACH ROW
    WHEN (OLD.cancel_requested_at IS NULL AND NEW.cancel_requested_at IS NOT NULL AND NEW.job_status = 'running')
    EXECUTE FUNCTION notify_cancel_requested();
