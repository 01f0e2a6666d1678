data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.api]
}

locals {
  # Cloud Functions gen2 run as Cloud Run services whose URLs are known before they exist,
  # so functions can name each other (enqueue needs process and status) without a cycle.
  function_names = ["enqueue", "process", "status", "cancel", "sweep"]
  url            = { for name in local.function_names : name => "https://${var.name_prefix}-${name}-${data.google_project.this.number}.${var.region}.run.app" }

  queue_path = "projects/${var.project_id}/locations/${var.region}/queues/${google_cloud_tasks_queue.jobs.name}"

  # IAM service-account database users are named by the email without ".gserviceaccount.com".
  db_user = { for name, account in google_service_account.fn : name => trimsuffix(account.email, ".gserviceaccount.com") }

  database_env = {
    INSTANCE_CONNECTION_NAME = google_sql_database_instance.main.connection_name
    DB_NAME                  = google_sql_database.jobs.name
    DB_OWNER_ROLE            = google_sql_user.owner.name
    ALLOWED_ORIGINS          = join(",", var.allowed_origins)
    MIGRATE_ON_START         = "1"
    TRACING                  = var.tracing ? "cloud-trace" : "" # empty: off (monitoring.tf)
  }

  tasks_env = {
    TASKS_QUEUE           = local.queue_path
    PROCESS_URL           = local.url["process"]
    TASKS_SERVICE_ACCOUNT = google_service_account.invoker.email
    JOB_TIMEOUT_SECONDS   = tostring(local.task_dispatch_deadline)
  }

  # The newsletter's writer: Vertex AI in this project, as the process function's account.
  writer_env = var.newsletter_writer == "gemini" ? {
    NEWSLETTER_WRITER      = "gemini"
    WRITER_MODEL           = var.writer_model
    WRITER_LOCATION        = var.writer_location
    WRITER_PROJECT         = var.project_id
    WRITER_TIMEOUT_SECONDS = tostring(var.writer_timeout_seconds)
  } : {}

  # One entry per folder in functions/: its size (infra/limits.tf), its environment and the
  # secrets it needs (and no other).
  function_env = {
    # ENQUEUE_KINDS empty: the setting's default (the default kind and the JOB_HANDLERS kinds).
    enqueue = merge(local.database_env, local.tasks_env, { STATUS_URL = local.url["status"], ENQUEUE_KINDS = join(",", var.enqueue_kinds) })
    process = merge(local.database_env, local.tasks_env, local.writer_env)
    # Streams close before the function's timeout; clients reconnect with Last-Event-ID.
    status = merge(local.database_env, {
      STREAM_MAX_SECONDS = "3300"
      MAX_OPEN_STREAMS   = tostring(var.status_streams_per_instance)
      CANCEL_URL         = local.url["cancel"]
      ENQUEUE_URL        = local.url["enqueue"]
    })
    cancel = merge(local.database_env, local.tasks_env)
    sweep  = merge(local.database_env, local.tasks_env)
  }
  function_secrets = {
    enqueue = local.token_secrets
    process = ["WEBHOOK_SECRET"]
    status  = local.token_secrets # the job list, the live list and the metrics view
    cancel  = concat(local.token_secrets, ["WEBHOOK_SECRET"])
    sweep   = ["WEBHOOK_SECRET"]
  }

  task_pushers = ["enqueue", "process", "cancel", "sweep"]

  functions = {
    for name, size in local.sizes : name => merge(size, {
      env = merge(local.function_env[name], {
        DB_USER      = local.db_user[name]
        DB_POOL_SIZE = tostring(size.pool)
        THREADS      = tostring(size.concurrency)
      })
      secrets = local.function_secrets[name]
    })
  }
}
