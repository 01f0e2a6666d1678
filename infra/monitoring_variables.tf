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

variable "alert_db_connection_limit" {
  description = "The database tier's max_connections, which the connections alert compares with (db-f1-micro: 25, db-g1-small: 50)."
  type        = number
  default     = 25
}

variable "alert_db_connection_share" {
  description = "Alert when the database's connections stay above this share of alert_db_connection_limit for 5 minutes (0 to 1)."
  type        = number
  default     = 0.8

  validation {
    condition     = var.alert_db_connection_share > 0 && var.alert_db_connection_share <= 1
    error_message = "alert_db_connection_share must be above 0 and at most 1."
  }
}
