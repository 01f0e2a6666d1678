variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region for the functions, Cloud SQL, Cloud Tasks and Cloud Scheduler."
  type        = string
  default     = "europe-west1"

  # Google's region names (europe-west1, us-central1, northamerica-northeast2): a zone
  # (europe-west1-b) or another cloud's name (eu-west-1) would fail only half-way through an apply.
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]{1,2}$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1 or us-central1 (not a zone, not another cloud's region name)."
  }
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
  description = "The most jobs running at once: the Cloud Tasks queue's max_concurrent_dispatches (the seed's MAX_CONCURRENT_JOBS). With the Scheduler's tick it must fit process's instances x its concurrency (80)."
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

variable "database_version" {
  description = "Cloud SQL PostgreSQL version."
  type        = string
  default     = "POSTGRES_18"

  # Enterprise offers 9.6 to 18, Enterprise Plus 12 to 18:
  # https://cloud.google.com/sql/docs/postgres/instance-settings
  validation {
    condition = (
      contains(["POSTGRES_9_6", "POSTGRES_10", "POSTGRES_11", "POSTGRES_12", "POSTGRES_13", "POSTGRES_14", "POSTGRES_15", "POSTGRES_16", "POSTGRES_17", "POSTGRES_18"], var.database_version) &&
      (var.db_edition == "ENTERPRISE" || !contains(["POSTGRES_9_6", "POSTGRES_10", "POSTGRES_11"], var.database_version))
    )
    error_message = "database_version must be POSTGRES_9_6 to POSTGRES_18 (Enterprise Plus: POSTGRES_12 or newer)."
  }
}

variable "db_edition" {
  description = "Cloud SQL edition. Set explicitly: PostgreSQL 16 and newer default to ENTERPRISE_PLUS, which refuses the shared-core tiers."
  type        = string
  default     = "ENTERPRISE"

  validation {
    condition     = contains(["ENTERPRISE", "ENTERPRISE_PLUS"], var.db_edition)
    error_message = "db_edition must be ENTERPRISE or ENTERPRISE_PLUS."
  }
}

variable "db_tier" {
  description = "Cloud SQL machine tier: db-f1-micro, db-g1-small or db-custom-CPUS-MEMORY_MB with ENTERPRISE; db-perf-optimized-N-* with ENTERPRISE_PLUS."
  type        = string
  default     = "db-f1-micro"

  # Shared-core and custom tiers are Enterprise only; Enterprise Plus takes the
  # performance-optimized machine types: https://cloud.google.com/sql/docs/postgres/editions-intro
  validation {
    condition = (
      var.db_edition == "ENTERPRISE" ? can(regex("^(db-f1-micro|db-g1-small|db-custom-[0-9]+-[0-9]+)$", var.db_tier)) :
      can(regex("^db-perf-optimized-N-[0-9]+$", var.db_tier))
    )
    error_message = "db_tier ${var.db_tier} is not offered with ${var.db_edition}: ENTERPRISE takes db-f1-micro, db-g1-small or db-custom-CPUS-MEMORY_MB; ENTERPRISE_PLUS takes db-perf-optimized-N-CPUS."
  }
}

variable "db_max_connections" {
  description = "Sets the max_connections database flag; null keeps Cloud SQL's default for the tier (db-f1-micro: 25). The connection budget is checked against it."
  type        = number
  default     = null
}

variable "db_reserved_connections" {
  description = "Connections kept free for an operator and `python -m shared.core.migrate`, outside the functions' budget."
  type        = number
  default     = 2
}

variable "max_instances" {
  description = "Most instances per function. Each opens up to its db_pool_size connections (status one more, to listen): the sum must fit the tier's max_connections."
  type        = map(number)
  default     = { enqueue = 2, process = 2, status = 1, cancel = 1, sweep = 1 }

  validation {
    condition     = toset(keys(var.max_instances)) == toset(["enqueue", "process", "status", "cancel", "sweep"]) && alltrue([for n in values(var.max_instances) : n >= 1])
    error_message = "max_instances must give each of enqueue, process, status, cancel and sweep at least 1."
  }
}

variable "db_pool_size" {
  description = "Database connections one instance of each function may open (its DB_POOL_SIZE)."
  type        = map(number)
  # enqueue and cancel run one short statement per request: one connection each keeps the
  # defaults, migration connections included, within db-f1-micro's 22 usable connections.
  default = { enqueue = 1, process = 2, status = 2, cancel = 1, sweep = 1 }

  validation {
    condition     = toset(keys(var.db_pool_size)) == toset(["enqueue", "process", "status", "cancel", "sweep"]) && alltrue([for n in values(var.db_pool_size) : n >= 1])
    error_message = "db_pool_size must give each of enqueue, process, status, cancel and sweep at least 1."
  }
}

variable "operators" {
  description = "Google accounts (emails) that may connect to the database as themselves, as members of the owner role (they count against db_reserved_connections)."
  type        = set(string)
  default     = []
}

variable "state_bucket" {
  description = "A Cloud Storage bucket for the Terraform state (created versioned, with uniform access; `make deploy` moves the state there). Empty: the state stays in infra/terraform.tfstate on this machine."
  type        = string
  default     = ""
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

variable "api_tokens" {
  description = "More tenants, each with its own bearer token (API_TOKENS): tenant name => token. Each sees only its own jobs; empty: one tenant, API_TOKEN's."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for tenant in keys(var.api_tokens) : can(regex("^[A-Za-z0-9_.-]{1,100}$", tenant)) && tenant != "default"])
    error_message = "Tenant names are 1 to 100 letters, digits, '_', '.' or '-', and not 'default' (API_TOKEN's tenant)."
  }
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

variable "enqueue_kinds" {
  description = "The job kinds callers may enqueue (the enqueue function's ENQUEUE_KINDS). Empty: the default kind (newsletter) and the JOB_HANDLERS kinds; [\"*\"]: every registered kind."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.enqueue_kinds, "*") || length(var.enqueue_kinds) == 1
    error_message = "enqueue_kinds is a list of kinds, or [\"*\"] alone."
  }
}

# -- the newsletter's writer (docs/newsletter.md) --------------------------------------------

variable "newsletter_writer" {
  description = "Who writes each newsletter: digest (the feeds' own summaries laid out, no model: the default) or gemini (a Gemini model on Vertex AI summarises them, as the process function's service account; this turns on the Vertex AI API and grants roles/aiplatform.user to that account only)."
  type        = string
  default     = "digest"

  validation {
    condition     = contains(["digest", "gemini"], var.newsletter_writer)
    error_message = "newsletter_writer must be digest or gemini."
  }
}

variable "writer_model" {
  description = "The Gemini model the gemini writer uses (WRITER_MODEL)."
  type        = string
  default     = "gemini-2.5-flash"
}

variable "writer_location" {
  description = "The Vertex AI location the gemini writer calls (WRITER_LOCATION): a region that serves writer_model, or global."
  type        = string
  default     = "us-central1"
}

variable "writer_timeout_seconds" {
  description = "The longest one generation may take before the newsletter falls back to the digest (WRITER_TIMEOUT_SECONDS). With the gemini writer it must leave a job's run-time limit (JOB_MAX_RUN_SECONDS: the timeout less min(60 s, a tenth)) 60 s for reading the feeds."
  type        = number
  default     = 120

  validation {
    condition = var.writer_timeout_seconds >= 1 && (var.newsletter_writer != "gemini" || (
      var.writer_timeout_seconds + 60 <= min(var.job_timeout_seconds, 1800) - min(60, min(var.job_timeout_seconds, 1800) / 10)
    ))
    error_message = "writer_timeout_seconds plus 60 s for the feeds must fit within a job's run-time limit (job_timeout_seconds, at most 1800, less min(60 s, a tenth)): raise job_timeout_seconds or lower writer_timeout_seconds."
  }
}
