# Each bundle (built by `make bundles`) is zipped and uploaded under its content hash, so a
# changed bundle is a new object and an unchanged one redeploys nothing.
data "archive_file" "bundle" {
  for_each = local.function_sizes

  type             = "zip"
  source_dir       = "${var.bundle_dir}/${each.key}"
  output_path      = "${path.module}/.bundles/${each.key}.zip"
  output_file_mode = "0644"
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only the function bundles that Terraform uploads; every write is already in the Cloud Audit Logs of the deploy.
  name                        = "${var.project_id}-${var.name_prefix}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_object" "bundle" {
  for_each = local.function_sizes

  name   = "${each.key}-${data.archive_file.bundle[each.key].output_md5}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.bundle[each.key].output_path
}

resource "google_cloudfunctions2_function" "fn" {
  #checkov:skip=CKV_GCP_124:enqueue, status and cancel serve browsers and must accept all ingress; process and sweep take internal traffic only (Scheduler and Cloud Tasks count as internal).
  for_each = local.functions

  name     = "${var.name_prefix}-${each.key}"
  location = var.region

  build_config {
    runtime     = var.python_runtime
    entry_point = each.key
    # Its own build account: in new projects the default one may lack the roles to build.
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.key].name
        # From the object itself, so a changed bundle never plans on a stale generation.
        generation = google_storage_bucket_object.bundle[each.key].generation
      }
    }
  }

  service_config {
    available_cpu                    = each.value.cpu
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    service_account_email            = google_service_account.fn[each.key].email
    ingress_settings                 = contains(["process", "sweep"], each.key) ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    environment_variables            = each.value.env

    dynamic "secret_environment_variables" {
      for_each = toset(each.value.secrets)
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        # The version Terraform wrote: a revision never starts before its secret has one.
        version = google_secret_manager_secret_version.secret[secret_environment_variables.value].version
      }
    }
  }

  # A revision starts serving as soon as it is created: everything it reaches at its first
  # request must exist by then (its secrets' access, its database user, with tracing on the
  # Telemetry API and its right to write spans, with the gemini writer its Vertex AI role).
  depends_on = [
    google_project_service.api,
    google_secret_manager_secret_iam_member.reads,
    google_project_iam_member.runtime,
    google_project_iam_member.build,
    google_sql_user.fn,
    google_project_service.telemetry,
    google_project_iam_member.traces_writer,
    google_project_iam_member.writer,
  ]
}
