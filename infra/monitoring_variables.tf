# Variables of monitoring.tf: where alerts go and when they fire.

variable "alert_email" {
  description = "Where alerts are emailed. Empty: the alert policies exist and show in the console, but notify no one."
  type        = string
  default     = ""
}

variable "alert_oldest_queued_minutes" {
  description = "Alert when the oldest due job has waited longer than this (minutes)."
  type        = number
  default     = 10

  validation {
    condition     = var.alert_oldest_queued_minutes >= 1
    error_message = "alert_oldest_queued_minutes must be at least 1."
  }
}

variable "alert_failure_ratio" {
  description = "Alert when more than this share of job attempts that ended in 15 minutes failed for good (0 to 1)."
  type        = number
  default     = 0.2

  validation {
    condition     = var.alert_failure_ratio > 0 && var.alert_failure_ratio < 1
    error_message = "alert_failure_ratio must be between 0 and 1."
  }
}

variable "alert_db_connection_share" {
  description = "Alert when the database's connections stay above this share of its max_connections (local.max_connections: the tier's, or db_max_connections) for 5 minutes (0 to 1)."
  type        = number
  default     = 0.8

  validation {
    condition     = var.alert_db_connection_share > 0 && var.alert_db_connection_share <= 1
    error_message = "alert_db_connection_share must be above 0 and at most 1."
  }
}

variable "tracing" {
  description = "Send OpenTelemetry traces to Cloud Trace (TRACING=cloud-trace on every function): enables telemetry.googleapis.com and lets each function's service account write spans."
  type        = bool
  default     = false
}
