variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region for the functions, Cloud SQL, Cloud Tasks and Cloud Scheduler."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (lowercase letters, digits and hyphens)."
  type        = string
  default     = "jobqueue"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "name_prefix must be 2 to 21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "bundle_dir" {
  description = "Where `make bundles` put one folder per function (main.py, shared/, requirements.txt)."
  type        = string
  default     = "../build"
}

variable "python_runtime" {
  description = "Cloud Functions runtime."
  type        = string
  default     = "python312"
}

variable "public_functions" {
  description = "Functions anyone may invoke: they authenticate by themselves (a bearer token, or the job id as a capability). process and sweep are never public."
  type        = set(string)
  default     = ["enqueue", "status", "cancel"]

  validation {
    condition     = length(setintersection(var.public_functions, ["process", "sweep"])) == 0
    error_message = "process and sweep must stay private: only Cloud Scheduler and Cloud Tasks may call them."
  }
}

variable "max_concurrent_jobs" {
  description = "The most jobs running at once: the Cloud Tasks queue's max_concurrent_dispatches (the seed's MAX_CONCURRENT_JOBS)."
  type        = number
  default     = 10
}

variable "job_timeout_seconds" {
  description = "How long one job may run: the process function's timeout (at most 3600) and the task's dispatch deadline (capped at 1800 by Cloud Tasks)."
  type        = number
  default     = 1800

  validation {
    condition     = var.job_timeout_seconds >= 60 && var.job_timeout_seconds <= 3600
    error_message = "job_timeout_seconds must be from 60 to 3600."
  }
}

variable "status_streams_per_instance" {
  description = "Open status streams one status instance serves: its THREADS and its request concurrency."
  type        = number
  default     = 80
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-f1-micro"
}

variable "db_pool_size" {
  description = "Database connections each function instance may open (DB_POOL_SIZE)."
  type        = number
  default     = 5
}

variable "max_instances" {
  description = "Most instances per function; with db_pool_size it bounds the database connections."
  type        = number
  default     = 10
}

variable "allowed_origins" {
  description = "CORS origins allowed to call the functions (ALLOWED_ORIGINS)."
  type        = list(string)
  default     = ["*"]
}

variable "api_token" {
  description = "Bearer token for cancel (and enqueue). Leave empty to generate one; read it with `terraform output -raw api_token`."
  type        = string
  default     = ""
  sensitive   = true
}

variable "webhook_secret" {
  description = "Key that signs completion webhooks. Leave empty to generate one."
  type        = string
  default     = ""
  sensitive   = true
}

variable "deletion_protection" {
  description = "Protect the Cloud SQL instance from `terraform destroy` (turn off only to tear down on purpose)."
  type        = bool
  default     = true
}
