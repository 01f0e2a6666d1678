# What each function may use, and the platform limits that it must stay within, checked at
# plan time. This file refers to variables only (no provider), so tests/test_infra.py runs
# `terraform plan` on it offline.

locals {
  # Per function: CPU and memory (a pair Cloud Run accepts), request concurrency (THREADS),
  # timeout, most instances, database pool size and listening connections per instance.
  function_sizes = {
    enqueue = {
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 8
      timeout     = 60
      listeners   = 0
    }
    process = {
      cpu         = "1"
      memory      = "1Gi"
      concurrency = 80 # I/O-bound jobs, each holding its request open but no connection
      timeout     = var.job_timeout_seconds
      listeners   = 1 # the LISTEN connection that brings cancels
    }
    status = {
      cpu         = "1"
      memory      = "512Mi"
      concurrency = var.status_streams_per_instance + 4 # a few threads beyond the streams for plain requests
      timeout     = 3600
      listeners   = 1 # the LISTEN connection that wakes the streams
    }
    cancel = {
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 8
      timeout     = 60
      listeners   = 0
    }
    sweep = {
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 1
      timeout     = 300
      listeners   = 0
    }
  }

  sizes = {
    for name, size in local.function_sizes : name => merge(size, {
      max_instances = var.max_instances[name]
      pool          = var.db_pool_size[name]
      connections   = var.max_instances[name] * (var.db_pool_size[name] + size.listeners + local.migration_connections)
    })
  }

  # Cloud Scheduler calls process every minute (the safety net behind Cloud Tasks) and sweep
  # every five minutes. An HTTP target's attempt deadline is from 15 s to 30 min:
  # https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs#Job.FIELDS.attempt_deadline
  # MIGRATE_ON_START: a starting instance applies migrations on a connection of its own
  # (shared/web/service.py) while its pooled connections wait for them (shared/core/db.py), so
  # at a cold start, as after every deploy, each instance holds one connection more.
  migration_connections = 1

  schedules = {
    process = { cron = "* * * * *", attempt_deadline = min(var.job_timeout_seconds, 1800) }
    sweep   = { cron = "*/5 * * * *", attempt_deadline = 300 }
  }

  # A Cloud Task's dispatch deadline for an HTTP target is from 15 s to 30 min:
  # https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks#Task.FIELDS.dispatch_deadline
  task_dispatch_deadline = min(var.job_timeout_seconds, 1800)

  # -- the connection budget ----------------------------------------------------------------
  # Cloud SQL's default max_connections by tier (by memory for custom tiers):
  # https://cloud.google.com/sql/docs/postgres/quotas#maximum_concurrent_connections
  tier_max_connections = { "db-f1-micro" = 25, "db-g1-small" = 50 }
  custom_tier          = regexall("^db-custom-[0-9]+-([0-9]+)$", var.db_tier)
  custom_memory_gib    = length(local.custom_tier) == 1 ? tonumber(local.custom_tier[0][0]) / 1024 : null
  memory_max_connections = [
    { from = 3.75, below = 6, connections = 100 },
    { from = 6, below = 7.5, connections = 200 },
    { from = 7.5, below = 15, connections = 400 },
    { from = 15, below = 30, connections = 500 },
    { from = 30, below = 60, connections = 600 },
    { from = 60, below = 120, connections = 800 },
    { from = 120, below = 1000000, connections = 1000 },
  ]
  max_connections = (
    var.db_max_connections != null ? var.db_max_connections :
    contains(keys(local.tier_max_connections), var.db_tier) ? local.tier_max_connections[var.db_tier] :
    local.custom_memory_gib != null ? one([for row in local.memory_max_connections : row.connections if local.custom_memory_gib >= row.from && local.custom_memory_gib < row.below]) :
    0
  )
  # PostgreSQL keeps superuser_reserved_connections (default 3) for superusers, which on
  # Cloud SQL only its own cloudsqladmin is:
  # https://www.postgresql.org/docs/current/runtime-config-connection.html#GUC-SUPERUSER-RESERVED-CONNECTIONS
  superuser_reserved_connections = 3
  usable_connections             = local.max_connections - local.superuser_reserved_connections
  function_connections           = sum([for size in values(local.sizes) : size.connections])
  needed_connections             = local.function_connections + var.db_reserved_connections
  budget_breakdown               = join(" + ", [for name, size in local.sizes : "${name} ${size.max_instances} x (${size.pool} + ${size.listeners} + ${local.migration_connections})"])

  # Cloud Run's CPU values: 0.08 to below 1 in steps of 0.01, or 1, 2, 4, 6, 8:
  # https://cloud.google.com/run/docs/configuring/services/cpu
  memory_mib = {
    for name, size in local.function_sizes : name => (
      endswith(size.memory, "Gi") ? tonumber(trimsuffix(size.memory, "Gi")) * 1024 : tonumber(trimsuffix(size.memory, "Mi"))
    )
  }
}

resource "terraform_data" "limits" {
  lifecycle {
    precondition {
      condition     = local.max_connections > 0
      error_message = "No max_connections is known for db_tier ${var.db_tier}: set db_max_connections (it also sets the database flag)."
    }

    precondition {
      condition     = local.needed_connections <= local.usable_connections
      error_message = "The database connection budget does not fit: ${local.budget_breakdown} + ${var.db_reserved_connections} reserved = ${local.needed_connections} connections, but ${var.db_tier} allows ${local.max_connections} (${local.usable_connections} after PostgreSQL's ${local.superuser_reserved_connections} superuser slots). Lower max_instances or db_pool_size, or raise db_tier or db_max_connections."
    }

    # Concurrency above 1 needs at least 1 vCPU: https://cloud.google.com/run/docs/configuring/services/cpu
    precondition {
      condition     = alltrue([for size in values(local.function_sizes) : size.concurrency == 1 || tonumber(size.cpu) >= 1])
      error_message = "Cloud Run needs at least 1 vCPU for request concurrency above 1: ${join(", ", [for name, size in local.function_sizes : "${name} (cpu ${size.cpu}, concurrency ${size.concurrency})" if size.concurrency > 1 && tonumber(size.cpu) < 1])}."
    }

    # CPU and memory pairs: below 1 vCPU, more than 512 MiB needs 0.5 vCPU and more than 1 GiB
    # needs 1; 4 vCPU need 2 GiB, 6 and 8 need 4 GiB; more than 4, 8, 16, 24 GiB need 2, 4, 6, 8:
    # https://cloud.google.com/run/docs/configuring/services/cpu
    # https://cloud.google.com/run/docs/configuring/services/memory-limits
    precondition {
      condition = alltrue([for name, size in local.function_sizes : (
        (can(regex("^0\\.[0-9]{1,2}$", size.cpu)) && tonumber(size.cpu) >= 0.08 || contains(["1", "2", "4", "6", "8"], size.cpu)) &&
        local.memory_mib[name] >= 128 && local.memory_mib[name] <= 32768 &&
        (local.memory_mib[name] <= 512 || tonumber(size.cpu) >= 0.5) &&
        (local.memory_mib[name] <= 1024 || tonumber(size.cpu) >= 1) &&
        (local.memory_mib[name] <= 4096 || tonumber(size.cpu) >= 2) &&
        (local.memory_mib[name] <= 8192 || tonumber(size.cpu) >= 4) &&
        (local.memory_mib[name] <= 16384 || tonumber(size.cpu) >= 6) &&
        (local.memory_mib[name] <= 24576 || tonumber(size.cpu) >= 8) &&
        (tonumber(size.cpu) < 4 || local.memory_mib[name] >= 2048) &&
        (tonumber(size.cpu) < 6 || local.memory_mib[name] >= 4096)
      )])
      error_message = "A CPU and memory pair that Cloud Run refuses: ${join(", ", [for name, size in local.function_sizes : "${name} ${size.cpu} vCPU ${size.memory}"])}."
    }

    # An HTTP function may run for at most 60 minutes: https://cloud.google.com/functions/docs/configuring/timeout
    precondition {
      condition     = alltrue([for size in values(local.function_sizes) : size.timeout >= 1 && size.timeout <= 3600])
      error_message = "An HTTP function's timeout must be from 1 to 3600 s."
    }

    precondition {
      condition     = alltrue([for schedule in values(local.schedules) : schedule.attempt_deadline >= 15 && schedule.attempt_deadline <= 1800]) && local.task_dispatch_deadline >= 15 && local.task_dispatch_deadline <= 1800
      error_message = "Cloud Scheduler attempt deadlines and the Cloud Tasks dispatch deadline must be from 15 to 1800 s."
    }

    # Cloud Tasks keeps max_concurrent_jobs invocations in flight and Scheduler adds one a minute.
    precondition {
      condition     = var.max_concurrent_jobs + 1 <= var.max_instances["process"] * local.function_sizes["process"].concurrency
      error_message = "max_concurrent_jobs (${var.max_concurrent_jobs}) + 1 Scheduler tick must fit process's ${var.max_instances["process"]} instances x ${local.function_sizes["process"].concurrency} requests."
    }
  }
}
