# The bearer tokens (API_TOKEN: the default tenant's; ADMIN_TOKEN: the operator's, across
# tenants; API_TOKENS: more tenants, only when var.api_tokens names any) and WEBHOOK_SECRET
# (signing webhooks) live in Secret Manager; each function gets, as environment, only the
# secrets local.function_secrets lists for it.
resource "random_password" "generated" {
  for_each = toset(["API_TOKEN", "ADMIN_TOKEN", "WEBHOOK_SECRET"])

  length  = 48
  special = false
}

locals {
  secret_values = merge({
    API_TOKEN      = var.api_token != "" ? var.api_token : random_password.generated["API_TOKEN"].result
    ADMIN_TOKEN    = random_password.generated["ADMIN_TOKEN"].result
    WEBHOOK_SECRET = var.webhook_secret != "" ? var.webhook_secret : random_password.generated["WEBHOOK_SECRET"].result
    }, length(var.api_tokens) > 0 ? {
    API_TOKENS = join(",", [for tenant, token in var.api_tokens : "${tenant}=${token}"])
  } : {})
  # Names only (not the values): for_each keys may not be sensitive, and whether any tenant is
  # configured is no secret (the tokens are), so the test says so with nonsensitive.
  has_tenants  = nonsensitive(length(var.api_tokens) > 0)
  secret_names = concat(["API_TOKEN", "ADMIN_TOKEN", "WEBHOOK_SECRET"], local.has_tenants ? ["API_TOKENS"] : [])
  # The tokens every authenticating function reads (API_TOKENS only when there are tenants).
  token_secrets = [for name in ["API_TOKEN", "API_TOKENS", "ADMIN_TOKEN"] : name if contains(local.secret_names, name)]
}

resource "google_secret_manager_secret" "secret" {
  for_each = toset(local.secret_names)

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
