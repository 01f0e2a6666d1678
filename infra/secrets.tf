# API_TOKEN (cancel, enqueue) and WEBHOOK_SECRET (signing webhooks) live in Secret Manager;
# each function gets, as environment, only the secrets local.functions lists for it.
resource "random_password" "generated" {
  for_each = toset(["API_TOKEN", "WEBHOOK_SECRET"])

  length  = 48
  special = false
}

locals {
  secret_values = {
    API_TOKEN      = var.api_token != "" ? var.api_token : random_password.generated["API_TOKEN"].result
    WEBHOOK_SECRET = var.webhook_secret != "" ? var.webhook_secret : random_password.generated["WEBHOOK_SECRET"].result
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = toset(["API_TOKEN", "WEBHOOK_SECRET"])

  secret_id = "${var.name_prefix}-${lower(replace(each.key, "_", "-"))}"

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_version" "secret" {
  for_each = google_secret_manager_secret.secret

  secret      = each.value.id
  secret_data = local.secret_values[each.key]
}
