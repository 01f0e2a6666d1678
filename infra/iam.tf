# Two service accounts: the runtime one the functions run as, and the invoker one that Cloud
# Scheduler and Cloud Tasks present (OIDC) to process and sweep, the only private functions.
resource "google_service_account" "runtime" {
  account_id   = "${var.name_prefix}-runtime"
  display_name = "jobqueue functions runtime"
}

resource "google_service_account" "invoker" {
  account_id   = "${var.name_prefix}-invoker"
  display_name = "jobqueue Scheduler and Cloud Tasks invoker"
}

# The runtime connects to Cloud SQL as an IAM database user.
resource "google_project_iam_member" "runtime" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/logging.logWriter"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# The runtime pushes tasks to this queue only...
resource "google_cloud_tasks_queue_iam_member" "runtime_enqueues" {
  name     = google_cloud_tasks_queue.jobs.name
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.runtime.email}"
}

# ...and may mint the invoker's OIDC token on those tasks (actAs on that account only).
resource "google_service_account_iam_member" "runtime_acts_as_invoker" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_secret_manager_secret_iam_member" "runtime_reads" {
  for_each = google_secret_manager_secret.secret

  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
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
