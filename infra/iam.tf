# One service account per function, so that each secret is readable only by the functions
# that use it; the invoker that Cloud Scheduler and Cloud Tasks present (OIDC) to process and
# sweep, the only private functions; the build account; and the database owner.
resource "google_service_account" "fn" {
  for_each = local.function_sizes

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "jobqueue ${each.key} function"

  depends_on = [google_project_service.api]
}

resource "google_service_account" "invoker" {
  account_id   = "${var.name_prefix}-invoker"
  display_name = "jobqueue Scheduler and Cloud Tasks invoker"

  depends_on = [google_project_service.api]
}

# Cloud Build runs each function's build as this account, with the roles the build needs
# (logs, the image in Artifact Registry, the source in Cloud Storage):
# https://cloud.google.com/run/docs/configuring/services/build-service-account
resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "jobqueue function builds"

  depends_on = [google_project_service.api]
}

resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectAdmin"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

# Each function connects to Cloud SQL as its own IAM database user, and writes logs.
resource "google_project_iam_member" "runtime" {
  for_each = {
    for pair in setproduct(keys(local.function_sizes), ["roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/logging.logWriter"]) :
    "${pair[0]} ${pair[1]}" => { function = pair[0], role = pair[1] }
  }

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.fn[each.value.function].email}"
}

# The newsletter's gemini writer calls Vertex AI as the process function's account, with no
# key; no other function may (only process runs jobs).
resource "google_project_iam_member" "writer" {
  count = var.newsletter_writer == "gemini" ? 1 : 0

  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = "serviceAccount:${google_service_account.fn["process"].email}"
}

# The functions that push tasks (all but status) may push to this queue only...
resource "google_cloud_tasks_queue_iam_member" "enqueues" {
  for_each = toset(local.task_pushers)

  name     = google_cloud_tasks_queue.jobs.name
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.fn[each.key].email}"
}

# ...and may mint the invoker's OIDC token on those tasks (actAs on that account only).
resource "google_service_account_iam_member" "acts_as_invoker" {
  for_each = toset(local.task_pushers)

  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.fn[each.key].email}"
}

# Each secret is readable by the accounts of the functions that list it, and no other.
resource "google_secret_manager_secret_iam_member" "reads" {
  for_each = {
    for pair in flatten([for name, secrets in local.function_secrets : [for secret in secrets : { function = name, secret = secret }]]) :
    "${pair.function} ${pair.secret}" => pair
  }

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.fn[each.value.function].email}"
}

# process and sweep: only the invoker (Scheduler, Cloud Tasks) may call them.
resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = toset(["process", "sweep"])

  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# enqueue, status, cancel: public, because they authenticate by themselves.
resource "google_cloud_run_service_iam_member" "public" {
  #checkov:skip=CKV_GCP_102:Public on purpose: enqueue and cancel check a bearer token in constant time, status takes an unguessable job id as its capability (the seed's contract).
  for_each = var.public_functions

  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}
