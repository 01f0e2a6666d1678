# The Cloud Tasks queue that runs jobs as soon as they are enqueued. Its
# max_concurrent_dispatches is the most jobs running at once (the seed's MAX_CONCURRENT_JOBS).
resource "google_cloud_tasks_queue" "jobs" {
  name     = "${var.name_prefix}-jobs"
  location = var.region

  rate_limits {
    max_concurrent_dispatches = var.max_concurrent_jobs
    max_dispatches_per_second = 50
  }

  retry_config {
    # A job retries through the queue's own backoff (run_at); the task retries only its
    # delivery, which process answers idempotently.
    max_attempts       = 5
    min_backoff        = "5s"
    max_backoff        = "300s"
    max_doublings      = 4
    max_retry_duration = "3600s"
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.api]
}
