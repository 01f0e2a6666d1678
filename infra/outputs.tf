output "function_urls" {
  description = "The URL of each function."
  value       = { for name, fn in google_cloudfunctions2_function.fn : name => fn.service_config[0].uri }
}

output "enqueue_url" {
  description = "POST jobs here."
  value       = google_cloudfunctions2_function.fn["enqueue"].service_config[0].uri
}

output "status_url" {
  description = "GET ?id=<job id> here (JSON, or &stream=1 for the live stream)."
  value       = google_cloudfunctions2_function.fn["status"].service_config[0].uri
}

output "cancel_url" {
  description = "POST {\"generationId\"} here with the bearer token."
  value       = google_cloudfunctions2_function.fn["cancel"].service_config[0].uri
}

output "tasks_queue" {
  description = "The Cloud Tasks queue that dispatches jobs."
  value       = local.queue_path
}

output "database_instance" {
  description = "The Cloud SQL instance connection name."
  value       = google_sql_database_instance.main.connection_name
}

output "api_token" {
  description = "The bearer token of the default tenant: enqueue, cancel, the job list."
  value       = local.secret_values["API_TOKEN"]
  sensitive   = true
}

output "admin_token" {
  description = "The operator's bearer token: lists, cancels and re-runs every tenant's jobs; the whole queue's metrics."
  value       = local.secret_values["ADMIN_TOKEN"]
  sensitive   = true
}

output "scheduler_jobs" {
  description = "The Cloud Scheduler job of process and sweep (make deploy's smoke check runs them)."
  value       = { for name, job in google_cloud_scheduler_job.tick : name => job.id }
}
