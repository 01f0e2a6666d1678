# The Terraform state holds the generated API token and webhook secret. With state_bucket set,
# Terraform creates this bucket (versioned, uniform access, never public) and `make deploy`
# moves the state into it (a gcs backend written to infra/backend.tf).
resource "google_storage_bucket" "state" {
  #checkov:skip=CKV_GCP_62:Access logs of the state bucket would be another bucket to secure; Cloud Audit Logs already record who read or wrote the state.
  count = var.state_bucket == "" ? 0 : 1

  name                        = var.state_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  depends_on = [google_project_service.api]
}
