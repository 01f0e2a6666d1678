# Cloud SQL for PostgreSQL. Each function connects through the Cloud SQL Python Connector as
# its own service account, with IAM database authentication: no password exists.
resource "google_sql_database_instance" "main" {
  #checkov:skip=CKV_GCP_60:A public IP with no authorized networks is reachable only through the Cloud SQL connector (IAM + mutual TLS); a private IP needs a VPC connector that costs more than the whole queue at idle.
  #checkov:skip=CKV_GCP_110:pgAudit would log every heartbeat and claim; the job table holds no data that needs an audit trail by default. Turn on cloudsql.enable_pgaudit if yours does.
  #checkov:skip=CKV_GCP_111:log_statement=all would log every heartbeat, claim and progress write (thousands a minute under load): cost without insight. Slow queries show in Query Insights.
  #checkov:skip=CKV2_GCP_13:log_duration logs every statement's duration, the same flood as above; Query Insights keeps latency per query.
  name                = "${var.name_prefix}-db"
  database_version    = var.database_version
  region              = var.region
  deletion_protection = var.deletion_protection

  settings {
    # Explicit: PostgreSQL 16 and newer default to ENTERPRISE_PLUS, which refuses shared-core tiers.
    edition           = var.db_edition
    tier              = var.db_tier
    availability_type = "ZONAL"
    disk_autoresize   = true

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "03:00"
    }

    ip_configuration {
      ipv4_enabled = true
      # Only the connector reaches the instance: mutual TLS with its client certificate.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }

    dynamic "database_flags" {
      for_each = var.db_max_connections == null ? [] : [var.db_max_connections]
      content {
        name  = "max_connections"
        value = tostring(database_flags.value)
      }
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  depends_on = [google_project_service.api, terraform_data.limits]
}

resource "google_sql_database" "jobs" {
  name     = "jobs"
  instance = google_sql_database_instance.main.name
}

# The owner of the schema: an IAM service-account user that nobody logs in as. It is a member
# of cloudsqlsuperuser, so it may create tables in `public` (PostgreSQL 15+ gives no one else
# that right). Migrations run under it (SET ROLE, DB_OWNER_ROLE), so it owns every table.
resource "google_service_account" "owner" {
  account_id   = "${var.name_prefix}-owner"
  display_name = "jobqueue database owner (no key; a role the functions share)"

  depends_on = [google_project_service.api]
}

resource "google_sql_user" "owner" {
  name           = trimsuffix(google_service_account.owner.email, ".gserviceaccount.com")
  instance       = google_sql_database_instance.main.name
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = ["cloudsqlsuperuser"]
}

# One database user per function, each granted the owner role: whichever instance migrates
# first, every function can use every table.
resource "google_sql_user" "fn" {
  for_each = google_service_account.fn

  name           = trimsuffix(each.value.email, ".gserviceaccount.com")
  instance       = google_sql_database_instance.main.name
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = [google_sql_user.owner.name]
}

# People who may look inside (Cloud SQL Studio, or the Cloud SQL Auth Proxy with
# --auto-iam-authn), each as themselves and a member of the owner role: no shared password.
resource "google_sql_user" "operator" {
  for_each = var.operators

  name           = each.value
  instance       = google_sql_database_instance.main.name
  type           = "CLOUD_IAM_USER"
  database_roles = [google_sql_user.owner.name]
}

resource "google_project_iam_member" "operator" {
  for_each = {
    for pair in setproduct(var.operators, ["roles/cloudsql.client", "roles/cloudsql.instanceUser"]) :
    "${pair[0]} ${pair[1]}" => { email = pair[0], role = pair[1] }
  }

  project = var.project_id
  role    = each.value.role
  member  = "user:${each.value.email}"

  depends_on = [google_project_service.api]
}
