"""Settings: one frozen object read from the environment once.

A missing or malformed setting fails at start with one message naming every bad variable,
instead of a confusing error on the first request. The core names no kind: each registered
kind may bring a reader for its own variables (`Kind.read_settings`), which is handed this
module's `SettingsReader`, so its problems join the same message and its values land in
`Settings.kinds` (a handler sees its kind's as `ctx.settings`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.core.errors import SettingsError

TRACING_MODES = ("cloud-trace", "console")  # shared/core/tracing.py
DEFAULT_TENANT = "default"  # the tenant of API_TOKEN, and of every job before tenants
# ADMIN_TOKEN's tenant: no tenant name can be "*" (see _TENANT), so it is never a tenant's.
# It lists and cancels every tenant's jobs; the jobs it enqueues belong to "*".
ADMIN_TENANT = "*"
DEFAULT_STREAMS_PER_CALLER = 8
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_HANDLER_PAIR = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z_][\w.]*):([A-Za-z_]\w*)\s*$")


@dataclass(frozen=True)
class DatabaseTarget:
    """Where to connect: a direct URL, or a Cloud SQL instance through the connector."""

    host: str | None = None
    port: int = 5432
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    ssl: bool = False
    instance_connection_name: str | None = None
    ip_type: str = "PUBLIC"

    @property
    def uses_connector(self) -> bool:
        return self.instance_connection_name is not None


@dataclass(frozen=True)
class Settings:
    database: DatabaseTarget
    heartbeat_seconds: float = 30.0
    cancel_check_seconds: float = 0.5
    stalled_after_seconds: float = 900.0
    retention_days: int = 30
    archive_retention_days: int = 365  # 0: keep archived jobs for ever
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 3600.0
    job_handlers: tuple[tuple[str, str], ...] = ()
    db_pool_size: int = 2
    db_pool_timeout_seconds: float = 5.0
    db_timeout_seconds: float = 10.0
    # Migrations and LISTEN need a session of their own: never through a transaction pooler.
    database_direct: DatabaseTarget | None = None
    db_pooler: str = "none"  # "transaction": DATABASE_URL is a transaction-mode pooler (PgBouncer)
    db_statement_timeout_seconds: float = 5.0
    api_token: str | None = field(default=None, repr=False)
    # (tenant, token) pairs: API_TOKEN as the default tenant, then API_TOKENS.
    api_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    allowed_origins: tuple[str, ...] = ("*",)
    status_url: str | None = None
    cancel_url: str | None = None
    enqueue_url: str | None = None
    max_body_bytes: int = 64 * 1024
    # A bulk enqueue ({"jobs": [...]}, up to 1,000 jobs) has a body limit of its own; each job
    # in it still obeys max_body_bytes.
    bulk_max_body_bytes: int = 4 * 1024 * 1024
    stream_max_seconds: float = 300.0
    stream_keepalive_seconds: float = 15.0
    stream_poll_seconds: float = 2.0
    stream_retry_ms: int = 1000
    max_open_streams: int = 6  # THREADS minus the threads kept for plain requests
    max_streams_per_caller: int = 6  # of those, what one address (job streams) or tenant (live lists) holds
    tasks_queue: str | None = None
    process_url: str | None = None
    tasks_service_account: str | None = None
    tasks_emulator_host: str | None = None
    job_timeout_seconds: float = 1800.0
    redispatch_after_seconds: float = 300.0
    webhook_secret: str | None = field(default=None, repr=False)
    # (tenant, secret) pairs from WEBHOOK_SECRETS: a tenant's own webhook key.
    webhook_secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    migrate_on_start: bool = False
    db_owner_role: str | None = None
    # Webhooks (shared.core.outbox, shared.core.netguard).
    callback_allow_loopback: bool = False  # development only: receivers on this machine, over http
    webhook_timeout_seconds: float = 5.0
    webhook_drain_seconds: float = 10.0
    webhook_max_attempts: int = 8
    # Each registered kind's own settings, by kind name (what its Kind.read_settings returned).
    kinds: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tracing: str | None = None  # TRACING: None (off), "cloud-trace" or "console"
    # Enqueue without API_TOKEN/API_TOKENS: refused unless this is set (fail closed).
    allow_anonymous_enqueue: bool = False
    # The kinds callers may enqueue (ENQUEUE_KINDS); None: the enqueue function's default,
    # ("*",): every registered kind.
    enqueue_kinds: tuple[str, ...] | None = None
    threads: int = 8  # functions-framework's THREADS: requests (and streams) in flight
    # Requests per caller per window (0: unlimited); see shared/core/ratelimit.py.
    rate_limit_window_seconds: int = 60
    rate_limit_enqueue: int = 120
    rate_limit_cancel: int = 60
    rate_limit_status: int = 300
    rate_limit_streams: int = 60
    # Jobs enqueued per tenant per window, a quota of its own: a bulk request is one request
    # for RATE_LIMIT_ENQUEUE and its jobs count here. The default lets a 1,000-job request through.
    rate_limit_jobs: int = 5000
    rate_limit_auth_failures: int = 20  # wrong tokens per client address per window
    rate_limit_ipv6_prefix: int = 48  # IPv6 callers are told apart by this network
    # Proxies in front that append the address they saw to X-Forwarded-For (Cloud Run's
    # front end: 1); 0 takes the connection's peer address instead.
    forwarded_hops: int = 1
    job_max_run_seconds: float = 1740.0
    max_attempts_limit: int = 100

    @property
    def direct_database(self) -> DatabaseTarget:
        """Where migrations and LISTEN connect: DATABASE_DIRECT_URL, else the database."""
        return self.database_direct or self.database

    @property
    def tasks_enabled(self) -> bool:
        return bool(self.tasks_queue and self.process_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return SettingsReader(os.environ if env is None else env).read()

    def webhook_secret_for(self, tenant: str) -> str | None:
        """The key that signs this tenant's webhooks: its own, else WEBHOOK_SECRET."""
        return dict(self.webhook_secrets).get(tenant, self.webhook_secret)

    def for_kind(self, kind: str) -> Any:
        """That kind's own settings, or None when it reads none."""
        return self.kinds.get(kind)


class SettingsReader:
    """Collects every problem before failing, so one run names them all. A kind's settings
    reader gets this object: `number(...)`, `text(name)` and `problem(message)`."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else None

    def text(self, name: str) -> str | None:
        """The variable as set, or None when it is unset or empty."""
        return self._raw(name)

    def flag(self, name: str) -> bool:
        """On when set to 1 or true; off when unset; anything else is a problem to name."""
        raw = self._raw(name)
        if raw is not None and raw.lower() not in ("1", "true", "0", "false"):
            self.problems.append(f"{name} must be 1 or 0, got {raw!r}")
        return raw is not None and raw.lower() in ("1", "true")

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def number(self, name: str, default: float, minimum: float, integer: bool = False):
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            self.problems.append(f"{name} must be {kind}, got {raw!r}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {raw!r}")
            return default
        return value

    def database(self) -> DatabaseTarget:
        url = self._raw("DATABASE_URL")
        instance = self._raw("INSTANCE_CONNECTION_NAME")
        if url and instance:
            self.problems.append("set DATABASE_URL or INSTANCE_CONNECTION_NAME, not both")
            return DatabaseTarget()
        if instance:
            return self._cloud_sql(instance)
        if url:
            return self._url(url)
        self.problems.append(
            "DATABASE_URL is not set (or set INSTANCE_CONNECTION_NAME, DB_USER and DB_NAME "
            "for Cloud SQL with IAM authentication)"
        )
        return DatabaseTarget()

    def _cloud_sql(self, instance: str) -> DatabaseTarget:
        if instance.count(":") != 2:
            self.problems.append(f"INSTANCE_CONNECTION_NAME must look like project:region:instance, got {instance!r}")
        for name in ("DB_USER", "DB_NAME"):
            if self._raw(name) is None:
                self.problems.append(f"{name} is required with INSTANCE_CONNECTION_NAME")
        ip_type = (self._raw("DB_IP_TYPE") or "PUBLIC").upper()
        if ip_type not in ("PUBLIC", "PRIVATE", "PSC"):
            self.problems.append(f"DB_IP_TYPE must be PUBLIC, PRIVATE or PSC, got {ip_type!r}")
        return DatabaseTarget(
            user=self._raw("DB_USER"),
            database=self._raw("DB_NAME"),
            instance_connection_name=instance,
            ip_type=ip_type,
        )

    def _url(self, url: str, name: str = "DATABASE_URL") -> DatabaseTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            self.problems.append(f"{name} must look like postgresql://user@host:port/dbname")
            return DatabaseTarget()
        try:
            port = parts.port or 5432
        except ValueError:
            self.problems.append(f"{name} has a port that is not a number")
            port = 5432
        database = unquote(parts.path.lstrip("/")) or None
        if database is None:
            self.problems.append(f"{name} must name a database")
        return DatabaseTarget(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username) if parts.username else "postgres",
            password=unquote(parts.password) if parts.password else None,
            database=database,
            ssl="sslmode=require" in parts.query or "sslmode=verify" in parts.query,
        )

    def direct_database(self) -> DatabaseTarget | None:
        url = self._raw("DATABASE_DIRECT_URL")
        return self._url(url, "DATABASE_DIRECT_URL") if url else None

    def pooler(self) -> str:
        pooler = (self._raw("DB_POOLER") or "none").lower()
        if pooler not in ("none", "transaction"):
            self.problems.append(f"DB_POOLER must be none or transaction, got {pooler!r}")
            return "none"
        return pooler

    def connection_limits(self) -> dict:
        """Timeouts: a statement is cancelled by the server before the client stops reading."""
        io_timeout = self.number("DB_TIMEOUT_SECONDS", 10.0, 0.1)
        statement = self.number("DB_STATEMENT_TIMEOUT_SECONDS", min(5.0, io_timeout / 2), 0.01)
        if statement >= io_timeout:
            self.problems.append(
                f"DB_STATEMENT_TIMEOUT_SECONDS ({statement:g}) must be below DB_TIMEOUT_SECONDS ({io_timeout:g}), "
                "so that the server cancels a slow statement before the client gives up on its connection"
            )
        return {"db_timeout_seconds": io_timeout, "db_statement_timeout_seconds": statement}

    def run_limits(self, job_timeout: float) -> dict:
        """JOB_MAX_RUN_SECONDS: a handler is told to stop (and its attempt fails) at this age,
        before the process function's own timeout cuts the invocation off unrecorded."""
        default = job_timeout - min(60.0, job_timeout / 10)
        limit = self.number("JOB_MAX_RUN_SECONDS", default, 1.0)
        if limit >= job_timeout:
            self.problems.append(
                f"JOB_MAX_RUN_SECONDS ({limit:g}) must be below JOB_TIMEOUT_SECONDS ({job_timeout:g}), "
                "the process function's timeout"
            )
        attempts = self.number("MAX_ATTEMPTS_LIMIT", 100, 1, integer=True)
        if attempts > 100:
            self.problems.append(f"MAX_ATTEMPTS_LIMIT must be at most 100, got {attempts}")
        return {"job_max_run_seconds": limit, "max_attempts_limit": min(attempts, 100)}

    def handlers(self) -> tuple[tuple[str, str], ...]:
        raw = self._raw("JOB_HANDLERS")
        if raw is None:
            return ()
        pairs = []
        for item in filter(None, (piece.strip() for piece in raw.split(","))):
            match = _HANDLER_PAIR.match(item)
            if not match:
                self.problems.append(f"JOB_HANDLERS entry {item!r} must look like kind=package.module:callable")
                continue
            kind, module, attribute = match.groups()
            pairs.append((kind, f"{module}:{attribute}"))
        return tuple(pairs)

    def tasks(self) -> dict:
        queue = self._raw("TASKS_QUEUE")
        process_url = self._raw("PROCESS_URL")
        if queue and not re.fullmatch(r"projects/[^/]+/locations/[^/]+/queues/[^/]+", queue):
            self.problems.append(f"TASKS_QUEUE must look like projects/P/locations/L/queues/Q, got {queue!r}")
        if bool(queue) != bool(process_url):
            self.problems.append("TASKS_QUEUE and PROCESS_URL go together: set both to dispatch with Cloud Tasks")
        if process_url and not process_url.startswith(("https://", "http://")):
            self.problems.append("PROCESS_URL must be an http(s) URL")
        return {
            "tasks_queue": queue,
            "process_url": process_url,
            "tasks_service_account": self._raw("TASKS_SERVICE_ACCOUNT"),
            "tasks_emulator_host": self._raw("CLOUD_TASKS_EMULATOR_HOST"),
            # Cloud Tasks allows a dispatch deadline of at most 30 minutes.
            "job_timeout_seconds": min(self.number("JOB_TIMEOUT_SECONDS", 1800.0, 15.0), 1800.0),
            "redispatch_after_seconds": self.number("REDISPATCH_AFTER_SECONDS", 300.0, 1.0),
        }

    def webhooks(self) -> dict:
        return {
            "callback_allow_loopback": self.flag("CALLBACK_ALLOW_LOOPBACK"),
            "webhook_timeout_seconds": self.number("WEBHOOK_TIMEOUT_SECONDS", 5.0, 0.1),
            "webhook_drain_seconds": self.number("WEBHOOK_DRAIN_SECONDS", 10.0, 0.0),
            "webhook_max_attempts": self.number("WEBHOOK_MAX_ATTEMPTS", 8, 1, integer=True),
        }

    def tokens(self) -> tuple[tuple[str, str], ...]:
        """API_TOKEN (the default tenant's), API_TOKENS (`tenant=token,...`) and ADMIN_TOKEN."""
        pairs = []
        if (token := self._raw("API_TOKEN")) is not None:
            pairs.append((DEFAULT_TENANT, token))
        pairs.extend(self.tenant_pairs("API_TOKENS", "token", unique=False))  # two tokens: a rotation
        if (token := self._raw("ADMIN_TOKEN")) is not None:
            pairs.append((ADMIN_TENANT, token))
        if len({token for _, token in pairs}) != len(pairs):
            self.problems.append("API_TOKEN, API_TOKENS and ADMIN_TOKEN must not repeat a token")
        return tuple(pairs)

    def tenant_pairs(self, name: str, what: str, unique: bool = True) -> tuple[tuple[str, str], ...]:
        """`tenant=value,...` (API_TOKENS, WEBHOOK_SECRETS); `unique`: each tenant named once."""
        pairs = []
        for item in filter(None, (piece.strip() for piece in (self._raw(name) or "").split(","))):
            tenant, _, value = item.partition("=")
            if not _TENANT.match(tenant.strip()) or not value.strip():
                # Name the entry by its tenant only: the value is a secret.
                self.problems.append(f"{name} entry for {tenant.strip()[:40]!r} must look like tenant={what}")
                continue
            pairs.append((tenant.strip(), value.strip()))
        if unique and len({tenant for tenant, _ in pairs}) != len(pairs):
            self.problems.append(f"{name} names a tenant twice")
        return tuple(pairs)

    def tracing(self) -> str | None:
        mode = self._raw("TRACING")
        if mode is not None and mode not in TRACING_MODES:
            self.problems.append(f"TRACING must be {' or '.join(TRACING_MODES)} (or unset: off), got {mode!r}")
            return None
        return mode

    def kind_list(self, name: str) -> tuple[str, ...] | None:
        raw = self._raw(name)
        if raw is None:
            return None
        kinds = tuple(dict.fromkeys(kind.strip() for kind in raw.split(",") if kind.strip()))
        if not kinds or ("*" in kinds and len(kinds) > 1):
            self.problems.append(f"{name} must list kinds, comma-separated, or be * for every kind")
            return None
        return kinds

    def stream_capacity(self) -> tuple[int, int]:
        """(THREADS, MAX_OPEN_STREAMS). Each open stream holds one of functions-framework's
        THREADS threads for its whole life, so the streams must leave some for plain requests
        (and for the 429 that refuses one stream too many): an explicit MAX_OPEN_STREAMS not
        below THREADS is refused, and the default keeps a fifth of them (at least 2) free."""
        threads = self.number("THREADS", (os.cpu_count() or 1) * 4, 1, integer=True)
        if self._raw("MAX_OPEN_STREAMS") is None:
            return threads, max(threads - max(2, threads // 5), 0)
        streams = self.number("MAX_OPEN_STREAMS", 100, 1, integer=True)
        if streams >= threads:
            self.problems.append(
                f"MAX_OPEN_STREAMS ({streams}) must be below THREADS ({threads}): each open stream holds "
                "a thread, and plain requests (and the 429 for one stream too many) need one too"
            )
        return threads, streams

    def ipv6_prefix(self) -> int:
        prefix = self.number("RATE_LIMIT_IPV6_PREFIX", 48, 16, integer=True)
        if prefix > 128:
            self.problems.append(f"RATE_LIMIT_IPV6_PREFIX must be at most 128, got {prefix}")
            return 48
        return prefix

    def streams_per_caller(self, max_open_streams: int) -> int:
        """MAX_STREAMS_PER_CALLER: 8 by default (a person's tabs; a tenant's dashboards), so
        that one address, or one tenant's live lists, leaves the rest of MAX_OPEN_STREAMS to
        others."""
        default = max(1, min(max_open_streams, DEFAULT_STREAMS_PER_CALLER))
        if self._raw("MAX_STREAMS_PER_CALLER") is None:
            return default
        per_caller = self.number("MAX_STREAMS_PER_CALLER", default, 1, integer=True)
        if per_caller > max_open_streams:
            self.problems.append(
                f"MAX_STREAMS_PER_CALLER ({per_caller}) must be at most MAX_OPEN_STREAMS ({max_open_streams})"
            )
            return default
        return per_caller

    def origins(self) -> tuple[str, ...]:
        raw = self._raw("ALLOWED_ORIGINS") or "*"
        return tuple(origin.strip() for origin in raw.split(",") if origin.strip())

    def kind_settings(self) -> Mapping[str, Any]:
        """Each registered kind's own variables, read by the kind, checked with the rest."""
        # Imported here, not at the top: the kind registry sits on the pool, which needs
        # this module first.
        from shared.core.handlers import builtin_kinds  # noqa: PLC0415

        read = {}
        for name, kind in sorted(builtin_kinds().items()):
            if kind.read_settings is not None:
                read[name] = kind.read_settings(self)
        return MappingProxyType(read)

    def read(self) -> Settings:
        heartbeat = self.number("HEARTBEAT_SECONDS", 30.0, 0.1)
        stalled = self.number("STALLED_AFTER_SECONDS", 900.0, 1.0)
        if stalled <= heartbeat:
            self.problems.append(
                f"STALLED_AFTER_SECONDS ({stalled:g}) must be longer than "
                f"HEARTBEAT_SECONDS ({heartbeat:g}), or every running job looks stalled"
            )
        stream_capacity = self.stream_capacity()
        settings = Settings(
            database=self.database(),
            heartbeat_seconds=heartbeat,
            cancel_check_seconds=self.number("CANCEL_CHECK_SECONDS", 0.5, 0.05),
            stalled_after_seconds=stalled,
            retention_days=self.number("RETENTION_DAYS", 30, 1, integer=True),
            archive_retention_days=self.number("ARCHIVE_RETENTION_DAYS", 365, 0, integer=True),
            retry_base_seconds=self.number("RETRY_BASE_SECONDS", 10.0, 0.0),
            retry_max_seconds=self.number("RETRY_MAX_SECONDS", 3600.0, 0.0),
            job_handlers=self.handlers(),
            db_pool_size=self.number("DB_POOL_SIZE", 2, 1, integer=True),
            db_pool_timeout_seconds=self.number("DB_POOL_TIMEOUT_SECONDS", 5.0, 0.0),
            database_direct=self.direct_database(),
            db_pooler=self.pooler(),
            **self.connection_limits(),
            api_token=self._raw("API_TOKEN"),
            api_tokens=self.tokens(),
            allowed_origins=self.origins(),
            status_url=self._raw("STATUS_URL"),
            cancel_url=self._raw("CANCEL_URL"),
            enqueue_url=self._raw("ENQUEUE_URL"),
            max_body_bytes=self.number("MAX_BODY_BYTES", 64 * 1024, 1024, integer=True),
            bulk_max_body_bytes=self.number("BULK_MAX_BODY_BYTES", 4 * 1024 * 1024, 1024, integer=True),
            stream_max_seconds=self.number("STREAM_MAX_SECONDS", 300.0, 1.0),
            stream_keepalive_seconds=self.number("STREAM_KEEPALIVE_SECONDS", 15.0, 0.1),
            stream_poll_seconds=self.number("STREAM_POLL_SECONDS", 2.0, 0.05),
            stream_retry_ms=self.number("STREAM_RETRY_MS", 1000, 0, integer=True),
            max_open_streams=stream_capacity[1],
            max_streams_per_caller=self.streams_per_caller(stream_capacity[1]),
            threads=stream_capacity[0],
            webhook_secret=self._raw("WEBHOOK_SECRET"),
            webhook_secrets=self.tenant_pairs("WEBHOOK_SECRETS", "secret"),
            migrate_on_start=self.flag("MIGRATE_ON_START"),
            db_owner_role=self._raw("DB_OWNER_ROLE"),
            tracing=self.tracing(),
            **self.webhooks(),
            kinds=self.kind_settings(),
            allow_anonymous_enqueue=self.flag("ALLOW_ANONYMOUS_ENQUEUE"),
            enqueue_kinds=self.kind_list("ENQUEUE_KINDS"),
            rate_limit_window_seconds=self.number("RATE_LIMIT_WINDOW_SECONDS", 60, 1, integer=True),
            rate_limit_enqueue=self.number("RATE_LIMIT_ENQUEUE", 120, 0, integer=True),
            rate_limit_cancel=self.number("RATE_LIMIT_CANCEL", 60, 0, integer=True),
            rate_limit_status=self.number("RATE_LIMIT_STATUS", 300, 0, integer=True),
            rate_limit_streams=self.number("RATE_LIMIT_STREAMS", 60, 0, integer=True),
            rate_limit_jobs=self.number("RATE_LIMIT_JOBS", 5000, 0, integer=True),
            rate_limit_auth_failures=self.number("RATE_LIMIT_AUTH_FAILURES", 20, 0, integer=True),
            rate_limit_ipv6_prefix=self.ipv6_prefix(),
            forwarded_hops=self.number("FORWARDED_HOPS", 1, 0, integer=True),
            **(tasks := self.tasks()),
            **self.run_limits(tasks["job_timeout_seconds"]),
        )
        if (
            settings.db_pooler == "transaction"
            and settings.database_direct is None
            and not settings.database.uses_connector
        ):
            # Through a transaction pooler, LISTEN would seem to work and hear nothing, and the
            # migration lock would not hold: both need a connection of their own.
            self.problems.append("DB_POOLER=transaction needs DATABASE_DIRECT_URL (for LISTEN and migrations)")
        if self.problems:
            raise SettingsError("Bad settings: " + "; ".join(self.problems))
        return settings
