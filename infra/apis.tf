# A fresh project has these APIs off. Every resource that calls one depends on
# google_project_service.api, so nothing races the enablement. Cloud Resource Manager and
# Service Usage come first, in a resource of their own that the other APIs wait for: enabling
# an API goes through Service Usage, and data.google_project and the project IAM members need
# Cloud Resource Manager. (Where Service Usage itself is off, Terraform cannot turn it on:
# docs/deploying.md gives the one-time gcloud command.)
locals {
  foundation_apis = toset([
    "cloudresourcemanager.googleapis.com",
    "serviceusage.googleapis.com",
  ])
  # Vertex AI only for the newsletter's gemini writer (var.newsletter_writer).
  apis = toset(concat([
    "iam.googleapis.com",
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "storage.googleapis.com",
    "sqladmin.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudscheduler.googleapis.com",
    "secretmanager.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
  ], var.newsletter_writer == "gemini" ? ["aiplatform.googleapis.com"] : []))
}

resource "google_project_service" "foundation" {
  for_each = local.foundation_apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_project_service" "api" {
  for_each = local.apis

  project = var.project_id
  service = each.value
  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy = false

  depends_on = [google_project_service.foundation]
}

# Deployments made before the split keep these two APIs: the same resources, new addresses.
moved {
  from = google_project_service.api["cloudresourcemanager.googleapis.com"]
  to   = google_project_service.foundation["cloudresourcemanager.googleapis.com"]
}

moved {
  from = google_project_service.api["serviceusage.googleapis.com"]
  to   = google_project_service.foundation["serviceusage.googleapis.com"]
}
