# Cloud Scheduler: process every minute (the safety net behind Cloud Tasks) and sweep every
# five minutes (local.schedules in limits.tf), each with an OIDC token of the invoker.
resource "google_cloud_scheduler_job" "tick" {
  for_each = local.schedules

  name             = "${var.name_prefix}-${each.key}"
  region           = var.region
  schedule         = each.value.cron
  time_zone        = "Etc/UTC"
  attempt_deadline = "${each.value.attempt_deadline}s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn[each.key].service_config[0].uri
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.fn[each.key].service_config[0].uri
    }
  }

  depends_on = [google_project_service.api]
}
