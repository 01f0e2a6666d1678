data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Cloud Functions gen2 run as Cloud Run services whose URLs are known before they exist,
  # so functions can name each other (enqueue needs process and status) without a cycle.
  function_names = ["enqueue", "process", "status", "cancel", "sweep"]
  url            = { for name in local.function_names : name => "https://${var.name_prefix}-${name}-${data.google_project.this.number}.${var.region}.run.app" }

  queue_path = "projects/${var.project_id}/locations/${var.region}/queues/${google_cloud_tasks_queue.jobs.name}"

  database_env = {
    INSTANCE_CONNECTION_NAME = google_sql_database_instance.main.connection_name
    DB_NAME                  = google_sql_database.jobs.name
    DB_USER                  = trimsuffix(google_service_account.runtime.email, ".gserviceaccount.com")
    DB_POOL_SIZE             = tostring(var.db_pool_size)
    ALLOWED_ORIGINS          = join(",", var.allowed_origins)
    MIGRATE_ON_START         = "1"
  }

  tasks_env = {
    TASKS_QUEUE           = local.queue_path
    PROCESS_URL           = local.url["process"]
    TASKS_SERVICE_ACCOUNT = google_service_account.invoker.email
    JOB_TIMEOUT_SECONDS   = tostring(min(var.job_timeout_seconds, 1800))
  }

  # One entry per folder in functions/: entry point, size, timeout, environment and the
  # secrets each needs (and no other).
  functions = {
    enqueue = {
      memory  = "512Mi"
      timeout = 60
      threads = 8
      env     = merge(local.database_env, local.tasks_env, { STATUS_URL = local.url["status"] })
      secrets = ["API_TOKEN"]
    }
    process = {
      memory  = "1Gi"
      timeout = var.job_timeout_seconds
      threads = 80 # many I/O-bound jobs per instance: no connection is held while a handler runs
      env     = merge(local.database_env, local.tasks_env)
      secrets = ["WEBHOOK_SECRET"]
    }
    status = {
      memory  = "512Mi"
      timeout = 3600
      threads = var.status_streams_per_instance + 4 # a few threads beyond the streams for plain requests
      # Streams close before the function's timeout; clients reconnect with Last-Event-ID.
      env = merge(local.database_env, {
        STREAM_MAX_SECONDS = "3300"
        MAX_OPEN_STREAMS   = tostring(var.status_streams_per_instance)
        CANCEL_URL         = local.url["cancel"]
      })
      secrets = []
    }
    cancel = {
      memory  = "512Mi"
      timeout = 60
      threads = 8
      env     = merge(local.database_env, local.tasks_env)
      secrets = ["API_TOKEN", "WEBHOOK_SECRET"]
    }
    sweep = {
      memory  = "512Mi"
      timeout = 300
      threads = 1
      env     = merge(local.database_env, local.tasks_env)
      secrets = ["WEBHOOK_SECRET"]
    }
  }
}
