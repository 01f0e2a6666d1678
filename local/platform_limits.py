"""The platform limits that infra/ must stay within, as Google documents them.

Written down here, apart from infra/limits.tf (which checks the same at plan time), so that a
test holds infra/'s values to the documentation and not to themselves. Each function returns
the problems it finds as sentences; none means the values fit.
"""

from __future__ import annotations

import re

# Cloud Run CPU values: 0.08 up to below 1 in steps of 0.01, or a whole 1, 2, 4, 6 or 8; below 1 vCPU,
# concurrency must be 1, more than 512 MiB needs 0.5 vCPU and more than 1 GiB needs 1 vCPU;
# 4 vCPU need at least 2 GiB, 6 and 8 need 4 GiB.
# https://cloud.google.com/run/docs/configuring/services/cpu
WHOLE_CPUS = (1, 2, 4, 6, 8)
MIN_FRACTIONAL_CPU = 0.08
MIN_MEMORY_MIB_FOR_CPU = {4: 2048, 6: 4096, 8: 4096}
# More than 4, 8, 16, 24 GiB need at least 2, 4, 6, 8 vCPU; at most 32 GiB.
# https://cloud.google.com/run/docs/configuring/services/memory-limits
MIN_CPU_ABOVE_MEMORY_MIB = ((24576, 8), (16384, 6), (8192, 4), (4096, 2), (1024, 1), (512, 0.5))
MAX_MEMORY_MIB = 32768
# Cloud Run functions' smallest memory setting (with .083 vCPU):
# https://cloud.google.com/functions/docs/configuring/memory
MIN_MEMORY_MIB = 128

# An HTTP function runs for at most 60 minutes: https://cloud.google.com/functions/docs/configuring/timeout
MAX_HTTP_TIMEOUT_SECONDS = 3600
# A Cloud Task's dispatch deadline for an HTTP target is from 15 s to 30 min:
# https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks#Task.FIELDS.dispatch_deadline
TASK_DISPATCH_DEADLINE_SECONDS = (15, 1800)
# A Cloud Scheduler HTTP job's attempt deadline is from 15 s to 30 min:
# https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs#Job.FIELDS.attempt_deadline
SCHEDULER_ATTEMPT_DEADLINE_SECONDS = (15, 1800)

# Cloud SQL editions: Enterprise offers PostgreSQL 9.6 to 18 on shared-core (db-f1-micro,
# db-g1-small) and custom machine types; Enterprise Plus offers 12 to 18 on the
# performance-optimized machine types only, and is the default from PostgreSQL 16 on.
# https://cloud.google.com/sql/docs/postgres/editions-intro
# https://cloud.google.com/sql/docs/postgres/instance-settings
EDITION_VERSIONS = {
    "ENTERPRISE": {"9_6", "10", "11", "12", "13", "14", "15", "16", "17", "18"},
    "ENTERPRISE_PLUS": {"12", "13", "14", "15", "16", "17", "18"},
}
EDITION_TIERS = {
    "ENTERPRISE": re.compile(r"db-f1-micro|db-g1-small|db-custom-\d+-\d+"),
    "ENTERPRISE_PLUS": re.compile(r"db-perf-optimized-N-\d+"),
}

# Cloud SQL for PostgreSQL's default max_connections, by tier, then by memory (GiB):
# https://cloud.google.com/sql/docs/postgres/quotas#maximum_concurrent_connections
TIER_MAX_CONNECTIONS = {"db-f1-micro": 25, "db-g1-small": 50}
MEMORY_MAX_CONNECTIONS = ((120, 1000), (60, 800), (30, 600), (15, 500), (7.5, 400), (6, 200), (3.75, 100))
# MIGRATE_ON_START: each starting instance opens one connection more, for the migrations.
MIGRATION_CONNECTIONS = 1

# PostgreSQL keeps superuser_reserved_connections (default 3) for superusers only:
# https://www.postgresql.org/docs/current/runtime-config-connection.html#GUC-SUPERUSER-RESERVED-CONNECTIONS
SUPERUSER_RESERVED_CONNECTIONS = 3


def memory_mib(text: str) -> float:
    """Kubernetes-style memory ("512Mi", "1Gi", "2G", "256M") in MiB."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi|M|G)", text)
    if not match:
        raise ValueError(f"cannot read the memory size {text!r}")
    number, unit = float(match.group(1)), match.group(2)
    return {"Mi": number, "Gi": number * 1024, "M": number * 1e6 / 2**20, "G": number * 1e9 / 2**20}[unit]


def cpu_memory_problems(name: str, cpu: float, memory: str, concurrency: int) -> list[str]:
    """A function's CPU, memory and request concurrency against Cloud Run's rules."""
    found = []
    mib = memory_mib(memory)
    fractional = MIN_FRACTIONAL_CPU <= cpu < 1 and abs(cpu * 100 - round(cpu * 100)) < 1e-9
    if not (fractional or cpu in WHOLE_CPUS):
        found.append(
            f"{name}: {cpu} vCPU is not a value Cloud Run accepts (0.08 to below 1 in steps of 0.01, or 1, 2, 4, 6, 8)"
        )
    if concurrency > 1 and cpu < 1:
        found.append(f"{name}: concurrency {concurrency} needs at least 1 vCPU, has {cpu}")
    if not MIN_MEMORY_MIB <= mib <= MAX_MEMORY_MIB:
        found.append(f"{name}: {memory} is outside {MIN_MEMORY_MIB} MiB to {MAX_MEMORY_MIB // 1024} GiB")
    for above, least in MIN_CPU_ABOVE_MEMORY_MIB:
        if mib > above and cpu < least:
            found.append(f"{name}: {memory} needs at least {least} vCPU, has {cpu}")
            break
    for whole, least_mib in MIN_MEMORY_MIB_FOR_CPU.items():
        if cpu >= whole and mib < least_mib:
            found.append(f"{name}: {cpu} vCPU need at least {least_mib} MiB, has {memory}")
            break
    return found


def timeout_problems(name: str, timeout: int) -> list[str]:
    if not 1 <= timeout <= MAX_HTTP_TIMEOUT_SECONDS:
        return [f"{name}: timeout {timeout} s is outside 1 to {MAX_HTTP_TIMEOUT_SECONDS} s"]
    return []


def deadline_problems(what: str, seconds: int, bounds: tuple[int, int]) -> list[str]:
    low, high = bounds
    if not low <= seconds <= high:
        return [f"{what}: {seconds} s is outside {low} to {high} s"]
    return []


def database_problems(version: str, edition: str | None, tier: str) -> list[str]:
    """A PostgreSQL version, edition and tier that Cloud SQL creates together."""
    if edition is None:
        return [f"no edition: {version} would default to ENTERPRISE_PLUS from PostgreSQL 16 on; set it explicitly"]
    if edition not in EDITION_VERSIONS:
        return [f"edition {edition} is not ENTERPRISE or ENTERPRISE_PLUS"]
    found = []
    if version.removeprefix("POSTGRES_") not in EDITION_VERSIONS[edition]:
        found.append(f"{version} is not offered with {edition}")
    if not EDITION_TIERS[edition].fullmatch(tier):
        found.append(f"tier {tier} is not offered with {edition}")
    return found


def max_connections(tier: str, flag: int | None = None) -> int | None:
    """The instance's max_connections: the flag when set, else Google's default for the tier."""
    if flag is not None:
        return flag
    if tier in TIER_MAX_CONNECTIONS:
        return TIER_MAX_CONNECTIONS[tier]
    custom = re.fullmatch(r"db-custom-\d+-(\d+)", tier)
    if custom:
        gib = int(custom.group(1)) / 1024
        return next((connections for least, connections in MEMORY_MAX_CONNECTIONS if gib >= least), None)
    return None


def budget_problems(functions: dict[str, dict], reserved: int, tier: str, flag: int | None = None) -> list[str]:
    """The sum over functions of max instances x (pool + listeners + the migration connection of
    a starting instance), plus the reserve for an operator and migrations, against the
    connections a non-superuser may open."""
    limit = max_connections(tier, flag)
    if limit is None:
        return [f"no max_connections is known for tier {tier}: set the max_connections flag"]
    usable = limit - SUPERUSER_RESERVED_CONNECTIONS
    parts = {
        name: fn["max_instances"] * (fn["pool"] + fn["listeners"] + MIGRATION_CONNECTIONS)
        for name, fn in functions.items()
    }
    needed = sum(parts.values()) + reserved
    if needed > usable:
        detail = " + ".join(f"{name} {count}" for name, count in parts.items())
        return [f"connections: {detail} + {reserved} reserved = {needed} > {usable} usable on {tier} ({limit} max)"]
    return []
