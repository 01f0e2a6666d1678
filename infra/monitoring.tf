# Observability at no cost at idle: log-based metrics read the structured lines the functions
# already write (shared/core/metrics.py lists them, each with an `event` field), sweep logs
# the gauges a log line cannot give once per tick, and alert policies and a dashboard read
# those metrics and the platform's own (Cloud Run requests and instances, Cloud SQL
# connections). tests/test_monitoring.py holds every filter here to a line the code writes,
# and every metric the alerts and the dashboard name to one defined here or by the platform.

locals {
  # Sweep runs every five minutes (local.schedules.sweep.cron): the gauges arrive at that pace,
  # and three ticks without one mean that sweep stopped.
  sweep_interval_seconds = 300
  log_metric_prefix      = "logging.googleapis.com/user/${var.name_prefix}"

  # Counters: one point per matching line. labels: fields of the line, kept as metric labels.
  log_counters = {
    jobs_started = {
      function    = "process"
      event       = "job.started"
      labels      = ["kind"]
      description = "Jobs claimed and started, by kind."
    }
    jobs_ended = {
      function    = "process"
      event       = "job.ended"
      labels      = ["kind", "outcome"]
      description = "Attempts that ended, by kind and outcome: completed, failed (for good), retrying (requeued with backoff), cancelled."
    }
    jobs_swept = {
      function    = "sweep"
      event       = "job.swept"
      labels      = ["kind", "outcome"]
      description = "Running jobs whose heartbeat stopped, taken over by sweep: requeued, failed or cancelled."
    }
    sweep_ticks = {
      function    = "sweep"
      event       = "queue.gauges"
      labels      = []
      description = "Sweep runs that logged the gauges, one per tick: none for three intervals means sweep stopped."
    }
  }

  # Distributions: the value of one numeric field of each matching line. The gauges are read
  # with ALIGN_MEAN over the sweep interval, which gives the tick's exact value whatever the
  # buckets; the wait and run times with percentiles, whose precision the buckets set
  # (exponential, x2: a percentile is within a factor of two of the truth, at worst).
  log_distributions = {
    job_wait_seconds = {
      function    = "process"
      event       = "job.started"
      field       = "waitSeconds"
      labels      = ["kind"]
      unit        = "s"
      description = "Seconds from when a job was due (enqueued, or its retry time) to its start, by kind."
    }
    job_run_seconds = {
      function    = "process"
      event       = "job.ended"
      field       = "runSeconds"
      labels      = ["kind", "outcome"]
      unit        = "s"
      description = "Seconds an attempt ran, from its claim to its end, by kind and outcome."
    }
    queue_queued = {
      function    = "sweep"
      event       = "queue.gauges"
      field       = "queued"
      labels      = []
      unit        = "1"
      description = "Jobs queued and due, at each sweep tick."
    }
    queue_running = {
      function    = "sweep"
      event       = "queue.gauges"
      field       = "running"
      labels      = []
      unit        = "1"
      description = "Jobs running, at each sweep tick."
    }
    queue_oldest_queued_age_seconds = {
      function    = "sweep"
      event       = "queue.gauges"
      field       = "oldestQueuedAgeSeconds"
      labels      = []
      unit        = "s"
      description = "How long the oldest due job has waited, at each sweep tick (0 when none)."
    }
    queue_oldest_heartbeat_age_seconds = {
      function    = "sweep"
      event       = "queue.gauges"
      field       = "oldestHeartbeatAgeSeconds"
      labels      = []
      unit        = "s"
      description = "The oldest heartbeat of a running job, at each sweep tick (0 when none)."
    }
  }

  alert_channels = google_monitoring_notification_channel.email[*].id
  database_id    = "${var.project_id}:${google_sql_database_instance.main.name}"
}

resource "google_logging_metric" "counter" {
  for_each = local.log_counters

  # Named by the functions' service names, not their resources: the metrics are made early, so
  # that the wait below (time_sleep.metrics_visible) overlaps the Cloud SQL instance's creation.
  depends_on = [google_project_service.api]

  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-${each.value.function}\" AND jsonPayload.event=\"${each.value.event}\""

  label_extractors = { for label in each.value.labels : label => "EXTRACT(jsonPayload.${label})" }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name_prefix} ${each.key}"

    dynamic "labels" {
      for_each = toset(each.value.labels)
      content {
        key         = labels.value
        value_type  = "STRING"
        description = "The line's ${labels.value} field."
      }
    }
  }
}

resource "google_logging_metric" "distribution" {
  for_each = local.log_distributions

  # Named by the functions' service names, not their resources: the metrics are made early, so
  # that the wait below (time_sleep.metrics_visible) overlaps the Cloud SQL instance's creation.
  depends_on = [google_project_service.api]

  name            = "${var.name_prefix}/${each.key}"
  description     = each.value.description
  filter          = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-${each.value.function}\" AND jsonPayload.event=\"${each.value.event}\""
  value_extractor = "EXTRACT(jsonPayload.${each.value.field})"

  label_extractors = { for label in each.value.labels : label => "EXTRACT(jsonPayload.${label})" }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "${var.name_prefix} ${each.key}"

    dynamic "labels" {
      for_each = toset(each.value.labels)
      content {
        key         = labels.value
        value_type  = "STRING"
        description = "The line's ${labels.value} field."
      }
    }
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 0.05
    }
  }
}

# Cloud Monitoring refuses an alert policy on a log-based metric younger than about ten minutes
# ("Cannot find metric(s) that match type ... If a metric was created recently, it could take up
# to 10 minutes": hashicorp/terraform-provider-google issue 11102), although the policy depends
# on the metric. So the policies on user metrics wait for this timer, which starts once every
# metric exists and starts again when the set of metrics changes.
resource "time_sleep" "metrics_visible" {
  create_duration = "10m"

  triggers = {
    metrics = join(",", concat([for m in google_logging_metric.counter : m.id], [for m in google_logging_metric.distribution : m.id]))
  }
}

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == "" ? 0 : 1

  display_name = "${var.name_prefix} operators"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "oldest_queued" {
  display_name          = "${var.name_prefix}: a job has waited over ${var.alert_oldest_queued_minutes} minutes"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels

  conditions {
    display_name = "oldest queued job's age (sweep's gauge)"
    condition_threshold {
      filter          = "metric.type=\"${local.log_metric_prefix}/queue_oldest_queued_age_seconds\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_oldest_queued_minutes * 60
      duration        = "0s"
      aggregations {
        alignment_period     = "${local.sweep_interval_seconds}s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A due job has waited longer than ${var.alert_oldest_queued_minutes} minutes: nothing is taking jobs, or not fast enough.
      Runbook: open the dashboard (queue depth, process instances); read process's logs for errors; check the Cloud Tasks queue is not paused (`gcloud tasks queues describe`) and that the Scheduler job ${var.name_prefix}-process runs; if the depth only grows, raise max_concurrent_jobs and max_instances. `python -m client stats` shows the same figures.
    EOT
  }

  depends_on = [google_project_service.api, time_sleep.metrics_visible]
}

resource "google_monitoring_alert_policy" "failure_ratio" {
  display_name          = "${var.name_prefix}: over ${var.alert_failure_ratio * 100}% of job attempts fail for good"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "jobs failed for good / attempts ended, over 15 minutes"
    condition_threshold {
      filter             = "metric.type=\"${local.log_metric_prefix}/jobs_ended\" AND resource.type=\"cloud_run_revision\" AND metric.labels.outcome=\"failed\""
      denominator_filter = "metric.type=\"${local.log_metric_prefix}/jobs_ended\" AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_failure_ratio
      duration           = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      More than ${var.alert_failure_ratio * 100}% of the job attempts that ended in 15 minutes failed with no attempt left.
      Runbook: in Logs Explorer, `jsonPayload.event="job.ended" AND jsonPayload.outcome="failed"` gives each job's error and kind; one kind failing points at its handler or its inputs (a feed down), every kind at the platform (database, a bad deploy: roll back with `make deploy` from the earlier commit).
    EOT
  }

  depends_on = [google_project_service.api, time_sleep.metrics_visible]
}

resource "google_monitoring_alert_policy" "stalled_swept" {
  display_name          = "${var.name_prefix}: sweep took over a job whose heartbeat stopped"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels

  conditions {
    display_name = "jobs swept as stalled"
    condition_threshold {
      filter          = "metric.type=\"${local.log_metric_prefix}/jobs_swept\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "${local.sweep_interval_seconds}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A running job's invocation died (crash, out of memory, timeout) and sweep requeued, failed or cancelled its job.
      Runbook: `jsonPayload.event="job.swept"` names the job; read the process function's logs around its last heartbeat for "Memory limit exceeded" (raise process's memory) or a timeout (the job outlives job_timeout_seconds: split it or raise the limit). One now and then is what sweep is for; a steady stream is a bug.
    EOT
  }

  depends_on = [google_project_service.api, time_sleep.metrics_visible]
}

resource "google_monitoring_alert_policy" "process_errors" {
  display_name          = "${var.name_prefix}: the process function answers 5xx"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "process 5xx responses"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.fn["process"].name}\" AND metric.labels.response_code_class=\"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The process function answered 5xx: a 503 means the database was unreachable or its pool busy, a 500 is a bug ("Unhandled error" in its logs, with the traceback), a 504 an invocation over its timeout.
      Runbook: read ${google_cloudfunctions2_function.fn["process"].name}'s logs at that time; for 503s check Cloud SQL (the connections alert, the instance's state); for 500s open an issue with the traceback. Jobs are not lost: a failed claim leaves the job queued, and sweep recovers a job whose invocation died.
    EOT
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "database_connections" {
  display_name          = "${var.name_prefix}: database connections near the tier's limit"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels

  conditions {
    display_name = "connections over ${var.alert_db_connection_share * 100}% of ${local.max_connections}"
    condition_threshold {
      filter          = "metric.type=\"cloudsql.googleapis.com/database/postgresql/num_backends\" AND resource.type=\"cloudsql_database\" AND resource.labels.database_id=\"${local.database_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = floor(local.max_connections * var.alert_db_connection_share)
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The database holds more than ${var.alert_db_connection_share * 100}% of its ${local.max_connections} connections for 5 minutes; past the limit, new instances get 503s.
      Runbook: each instance opens up to db_pool_size connections (status one more): lower max_instances or db_pool_size, or move to a larger tier (db_tier; infra/ checks the connection budget at plan time). The dashboard's instance chart shows which function grew.
    EOT
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "sweep_stopped" {
  display_name          = "${var.name_prefix}: sweep stopped running"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "no sweep tick for three intervals"
    condition_absent {
      filter   = "metric.type=\"${local.log_metric_prefix}/sweep_ticks\" AND resource.type=\"cloud_run_revision\""
      duration = "${3 * local.sweep_interval_seconds}s"
      aggregations {
        alignment_period     = "${local.sweep_interval_seconds}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Sweep has not logged its gauges for three intervals: stalled jobs stay running, lost Cloud Tasks are not pushed again, old jobs are not archived, and the gauges above go stale.
      Runbook: check that the Scheduler job ${var.name_prefix}-sweep is enabled and its last attempts succeeded (`gcloud scheduler jobs describe ${var.name_prefix}-sweep`); read ${google_cloudfunctions2_function.fn["sweep"].name}'s logs for errors (a 503 is the database); run it by hand with `gcloud scheduler jobs run ${var.name_prefix}-sweep`.
    EOT
  }

  depends_on = [google_project_service.api, time_sleep.metrics_visible]
}

resource "google_monitoring_dashboard" "queue" {
  dashboard_json = templatefile("${path.module}/dashboards/queue.json", {
    name_prefix      = var.name_prefix
    metric_prefix    = local.log_metric_prefix
    database_id      = local.database_id
    connection_limit = local.max_connections
  })

  depends_on = [google_project_service.api, google_logging_metric.counter, google_logging_metric.distribution]
}

# Traces (var.tracing): the functions send OTLP to Cloud Trace's Telemetry API
# (shared/core/tracing.py), which needs that API and the right to write spans.
resource "google_project_service" "telemetry" {
  count = var.tracing ? 1 : 0

  project            = var.project_id
  service            = "telemetry.googleapis.com"
  disable_on_destroy = false

  depends_on = [google_project_service.api]
}

resource "google_project_iam_member" "traces_writer" {
  for_each = var.tracing ? toset(keys(local.function_sizes)) : toset([])

  project = var.project_id
  role    = "roles/telemetry.tracesWriter"
  member  = "serviceAccount:${google_service_account.fn[each.key].email}"

  depends_on = [google_project_service.telemetry]
}
