"""What the declarations in settings.py cannot say in a bound: the settings read by a
function of their own (a database URL, the token list, ...), the defaults derived from
another setting, and the rules between settings. All of them name the variable at fault."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from shared.core.declared import SettingsReader

TRACING_MODES = ("cloud-trace", "console")  # shared/core/tracing.py
DEFAULT_TENANT = "default"  # the tenant of API_TOKEN, and of every job before tenants
# ADMIN_TOKEN's tenant: no tenant name can be "*" (see _TENANT), so it is never a tenant's.
# It lists and cancels every tenant's jobs; the jobs it enqueues belong to "*".
ADMIN_TENANT = "*"
DEFAULT_STREAMS_PER_CALLER = 8
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_HANDLER_PAIR = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z_][\w.]*):([A-Za-z_]\w*)\s*$")
_TASKS_QUEUE = re.compile(r"projects/[^/]+/locations/[^/]+/queues/[^/]+")


@dataclass(frozen=True)
class DatabaseTarget:
    """Where to connect: a direct URL, or a Cloud SQL instance through the connector."""

    host: str | None = None
    port: int = 5432
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    # TLS as libpq's sslmode (`?sslmode=` in the URL; connection.py): prefer, disable,
    # require, verify-ca or verify-full, the last two against `?sslrootcert=` (a CA file)
    # or else the system's CAs.
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    instance_connection_name: str | None = None
    ip_type: str = "PUBLIC"

    @property
    def uses_connector(self) -> bool:
        return self.instance_connection_name is not None


# -- defaults derived from another setting ------------------------------------------------------


def statement_timeout(values: dict) -> float:
    return min(5.0, values["db_timeout_seconds"] / 2)


def default_threads(values: dict) -> int:
    return (os.cpu_count() or 1) * 4


def open_streams(values: dict) -> int:
    return max(values["threads"] - max(2, values["threads"] // 5), 0)


def streams_per_caller(values: dict) -> int:
    """8 (a person's tabs; a tenant's dashboards), so that one address, or one tenant's live
    lists, leaves the rest of MAX_OPEN_STREAMS to others."""
    return max(1, min(values["max_open_streams"], DEFAULT_STREAMS_PER_CALLER))


def max_run(values: dict) -> float:
    return values["job_timeout_seconds"] - min(60.0, values["job_timeout_seconds"] / 10)


# -- settings read by a function of their own ---------------------------------------------------


def read_database(reader: SettingsReader, name: str, values: dict) -> DatabaseTarget:
    url = reader.raw(name)
    instance = values["instance_connection_name"]
    if url and instance:
        reader.problem("set DATABASE_URL or INSTANCE_CONNECTION_NAME, not both")
        return DatabaseTarget()
    if instance:
        return _cloud_sql(reader, instance, values)
    if url:
        return _url(reader, url, name)
    reader.problem(
        "DATABASE_URL is not set (or set INSTANCE_CONNECTION_NAME, DB_USER and DB_NAME "
        "for Cloud SQL with IAM authentication)"
    )
    return DatabaseTarget()


def _cloud_sql(reader: SettingsReader, instance: str, values: dict) -> DatabaseTarget:
    if instance.count(":") != 2:
        reader.problem(f"INSTANCE_CONNECTION_NAME must look like project:region:instance, got {instance!r}")
    for name, field_name in (("DB_USER", "db_user"), ("DB_NAME", "db_name")):
        if values[field_name] is None:
            reader.problem(f"{name} is required with INSTANCE_CONNECTION_NAME")
    return DatabaseTarget(
        user=values["db_user"],
        database=values["db_name"],
        instance_connection_name=instance,
        ip_type=values["db_ip_type"],
    )


def _url(reader: SettingsReader, url: str, name: str) -> DatabaseTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        reader.problem(f"{name} must look like postgresql://user@host:port/dbname")
        return DatabaseTarget()
    try:
        port = parts.port or 5432
    except ValueError:
        reader.problem(f"{name} has a port that is not a number")
        port = 5432
    database = unquote(parts.path.lstrip("/")) or None
    if database is None:
        reader.problem(f"{name} must name a database")
    return DatabaseTarget(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else "postgres",
        password=unquote(parts.password) if parts.password else None,
        database=database,
        **_tls(reader, parse_qs(parts.query, keep_blank_values=True), name),
    )


SSLMODES = ("disable", "prefer", "require", "verify-ca", "verify-full")


def _tls(reader: SettingsReader, query: dict[str, list[str]], name: str) -> dict:
    sslmode = query.get("sslmode", ["prefer"])[-1]
    if sslmode not in SSLMODES:
        reader.problem(f"{name} sslmode must be one of {', '.join(SSLMODES)}, not {sslmode!r}")
        sslmode = "prefer"
    return {"sslmode": sslmode, "sslrootcert": query.get("sslrootcert", [None])[-1]}


def read_direct_database(reader: SettingsReader, name: str, values: dict) -> DatabaseTarget | None:
    url = reader.raw(name)
    return _url(reader, url, name) if url else None


def read_handlers(reader: SettingsReader, name: str, values: dict) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (piece.strip() for piece in (reader.raw(name) or "").split(","))):
        match = _HANDLER_PAIR.match(item)
        if not match:
            reader.problem(f"{name} entry {item!r} must look like kind=package.module:callable")
            continue
        kind, module, attribute = match.groups()
        pairs.append((kind, f"{module}:{attribute}"))
    return tuple(pairs)


def tenant_pairs(reader: SettingsReader, name: str, what: str, unique: bool = True) -> tuple[tuple[str, str], ...]:
    """`tenant=value,...` (API_TOKENS, WEBHOOK_SECRETS); `unique`: each tenant named once."""
    pairs = []
    for item in filter(None, (piece.strip() for piece in (reader.raw(name) or "").split(","))):
        tenant, _, value = item.partition("=")
        if not _TENANT.match(tenant.strip()) or not value.strip():
            # Name the entry by its tenant only: the value is a secret.
            reader.problem(f"{name} entry for {tenant.strip()[:40]!r} must look like tenant={what}")
            continue
        pairs.append((tenant.strip(), value.strip()))
    if unique and len({tenant for tenant, _ in pairs}) != len(pairs):
        reader.problem(f"{name} names a tenant twice")
    return tuple(pairs)


def read_tokens(reader: SettingsReader, name: str, values: dict) -> tuple[tuple[str, str], ...]:
    """API_TOKEN (the default tenant's), API_TOKENS (`tenant=token,...`) and ADMIN_TOKEN."""
    pairs = []
    if values["api_token"] is not None:
        pairs.append((DEFAULT_TENANT, values["api_token"]))
    pairs.extend(tenant_pairs(reader, name, "token", unique=False))  # two tokens: a rotation
    if values["admin_token"] is not None:
        pairs.append((ADMIN_TENANT, values["admin_token"]))
    if len({token for _, token in pairs}) != len(pairs):
        reader.problem("API_TOKEN, API_TOKENS and ADMIN_TOKEN must not repeat a token")
    return tuple(pairs)


def read_webhook_secrets(reader: SettingsReader, name: str, values: dict) -> tuple[tuple[str, str], ...]:
    return tenant_pairs(reader, name, "secret")


def read_tracing(reader: SettingsReader, name: str, values: dict) -> str | None:
    mode = reader.raw(name)
    if mode is not None and mode not in TRACING_MODES:
        reader.problem(f"{name} must be {' or '.join(TRACING_MODES)} (or unset: off), got {mode!r}")
        return None
    return mode


def read_kind_list(reader: SettingsReader, name: str, values: dict) -> tuple[str, ...] | None:
    raw = reader.raw(name)
    if raw is None:
        return None
    kinds = tuple(dict.fromkeys(kind.strip() for kind in raw.split(",") if kind.strip()))
    if not kinds or ("*" in kinds and len(kinds) > 1):
        reader.problem(f"{name} must list kinds, comma-separated, or be * for every kind")
        return None
    return kinds


def read_origins(reader: SettingsReader, name: str, values: dict) -> tuple[str, ...]:
    raw = reader.raw(name) or "*"
    return tuple(origin.strip() for origin in raw.split(",") if origin.strip())


# -- the rules between settings ----------------------------------------------------------------


def _stall_after_heartbeat(values: dict, reader: SettingsReader) -> None:
    if values["stalled_after_seconds"] <= values["heartbeat_seconds"]:
        reader.problem(
            f"STALLED_AFTER_SECONDS ({values['stalled_after_seconds']:g}) must be longer than "
            f"HEARTBEAT_SECONDS ({values['heartbeat_seconds']:g}), or every running job looks stalled"
        )


def _statement_before_connection_timeout(values: dict, reader: SettingsReader) -> None:
    """A statement is cancelled by the server before the client stops reading."""
    statement, io_timeout = values["db_statement_timeout_seconds"], values["db_timeout_seconds"]
    if statement >= io_timeout:
        reader.problem(
            f"DB_STATEMENT_TIMEOUT_SECONDS ({statement:g}) must be below DB_TIMEOUT_SECONDS ({io_timeout:g}), "
            "so that the server cancels a slow statement before the client gives up on its connection"
        )


def _run_limit_before_function_timeout(values: dict, reader: SettingsReader) -> None:
    """A handler is told to stop (and its attempt fails) before the process function's own
    timeout cuts the invocation off unrecorded."""
    limit, timeout = values["job_max_run_seconds"], values["job_timeout_seconds"]
    if limit >= timeout:
        reader.problem(
            f"JOB_MAX_RUN_SECONDS ({limit:g}) must be below JOB_TIMEOUT_SECONDS ({timeout:g}), "
            "the process function's timeout"
        )


def _threads_left_for_requests(values: dict, reader: SettingsReader) -> None:
    """Each open stream holds one of functions-framework's THREADS threads for its whole life,
    so the streams must leave some for plain requests (and for the 429 that refuses one stream
    too many); the derived default keeps a fifth of them (at least 2) free."""
    streams, threads = values["max_open_streams"], values["threads"]
    if reader.is_set("MAX_OPEN_STREAMS") and streams >= threads:
        reader.problem(
            f"MAX_OPEN_STREAMS ({streams}) must be below THREADS ({threads}): each open stream holds "
            "a thread, and plain requests (and the 429 for one stream too many) need one too"
        )


def _caller_streams_within_the_instance(values: dict, reader: SettingsReader) -> None:
    per_caller, streams = values["max_streams_per_caller"], values["max_open_streams"]
    if reader.is_set("MAX_STREAMS_PER_CALLER") and per_caller > streams:
        reader.problem(f"MAX_STREAMS_PER_CALLER ({per_caller}) must be at most MAX_OPEN_STREAMS ({streams})")


def _tasks_complete(values: dict, reader: SettingsReader) -> None:
    queue, process_url = values["tasks_queue"], values["process_url"]
    if queue and not _TASKS_QUEUE.fullmatch(queue):
        reader.problem(f"TASKS_QUEUE must look like projects/P/locations/L/queues/Q, got {queue!r}")
    if bool(queue) != bool(process_url):
        reader.problem("TASKS_QUEUE and PROCESS_URL go together: set both to dispatch with Cloud Tasks")
    if process_url and not process_url.startswith(("https://", "http://")):
        reader.problem("PROCESS_URL must be an http(s) URL")


def _pooler_has_a_direct_connection(values: dict, reader: SettingsReader) -> None:
    # Through a transaction pooler, LISTEN would seem to work and hear nothing, and the
    # migration lock would not hold: both need a connection of their own.
    if (
        values["db_pooler"] == "transaction"
        and values["database_direct"] is None
        and not values["database"].uses_connector
    ):
        reader.problem("DB_POOLER=transaction needs DATABASE_DIRECT_URL (for LISTEN and migrations)")


CHECKS = (
    _stall_after_heartbeat,
    _statement_before_connection_timeout,
    _run_limit_before_function_timeout,
    _threads_left_for_requests,
    _caller_streams_within_the_instance,
    _tasks_complete,
    _pooler_has_a_direct_connection,
)
