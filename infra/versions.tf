terraform {
  # 1.9: a variable's validation may refer to other variables (version, edition and tier).
  required_version = ">= 1.9"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 8.x: google_sql_user.database_roles, which grants the owner role without SQL.
      version = ">= 8.0, < 9.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
    # time_sleep: alert policies wait until Cloud Monitoring knows the log-based metrics.
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
