"""Settings: one frozen object read from the environment once, each setting declared once.

A setting is one field of `Settings` declared with `setting(...)`: its environment variable,
default, bounds and one line of doc (the machinery: declared.py). The reader
(`SettingsReader.read_declared`), the validation and the table in docs/settings.md
(`markdown_table`, held to the page by tests/test_settings.py) all come from those
declarations; what a bound cannot say (a URL, the tokens, the rules between settings) is in
settings_rules.py. A missing or malformed setting
fails at start with one message naming every bad variable, instead of a confusing error on
the first request.

The core names no kind. A kind declares its own settings the same way (a frozen dataclass
whose fields are `setting(...)`), brings the class through its registration, and the handler
registry reads them with the core's (`shared.core.handlers.read_settings`): one reader, one
message; a handler sees its kind's as `ctx.settings`. These three modules import no other part
of the core but its errors, so nothing that needs settings can close an import circle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from shared.core import settings_rules as rules
from shared.core.declared import SettingsReader, declarations, markdown_table, setting
from shared.core.settings_rules import ADMIN_TENANT, DEFAULT_TENANT, TRACING_MODES, DatabaseTarget

MAX_ATTEMPTS = 100  # the most attempts a job may have (MAX_ATTEMPTS_LIMIT may lower it)
CLOUD_TASKS_MAX_DEADLINE = 1800.0  # seconds: Cloud Tasks allows a dispatch deadline of at most 30 minutes

__all__ = [
    "ADMIN_TENANT",
    "DEFAULT_TENANT",
    "TRACING_MODES",
    "DatabaseTarget",
    "Settings",
    "SettingsReader",
    "declarations",
    "markdown_table",
    "setting",
]


@dataclass(frozen=True)
class Settings:
    # -- the database --------------------------------------------------------------------------
    instance_connection_name: str | None = setting(
        "INSTANCE_CONNECTION_NAME",
        doc="instead of `DATABASE_URL`: Cloud SQL through the Python connector with IAM database auth (no "
        "password), with `DB_USER` and `DB_NAME`. The connector is created on the first connection only",
    )
    db_user: str | None = setting("DB_USER", doc="the database user with `INSTANCE_CONNECTION_NAME` (an IAM user)")
    db_name: str | None = setting("DB_NAME", doc="the database with `INSTANCE_CONNECTION_NAME`")
    db_ip_type: str = setting(
        "DB_IP_TYPE", "PUBLIC", choices=("PUBLIC", "PRIVATE", "PSC"), doc="the instance's address, with the connector"
    )
    database: DatabaseTarget = setting(  # noqa: RUF009 (a declaration: a field, not a shared default)
        "DATABASE_URL",
        DatabaseTarget(),
        read=rules.read_database,
        shown="—",
        doc="`postgresql://user:password@host:port/db` for a direct connection, or a transaction-mode pooler with "
        "`DB_POOLER`; TLS as libpq's `?sslmode=`: `prefer` (default), `disable`, `require`, `verify-ca` or "
        "`verify-full`, the last two against `&sslrootcert=` (a CA file) or the system's CAs",
    )
    # Migrations and LISTEN need a session of their own: never through a transaction pooler.
    database_direct: DatabaseTarget | None = setting(  # noqa: RUF009
        "DATABASE_DIRECT_URL",
        read=rules.read_direct_database,
        shown="`DATABASE_URL`",
        doc="a direct connection for migrations (advisory lock) and LISTEN (cancels, status streams): "
        "never a transaction pooler",
    )
    db_pooler: str = setting(
        "DB_POOLER",
        "none",
        choices=("none", "transaction"),
        doc="`transaction`: `DATABASE_URL` is a transaction-mode pooler (PgBouncer): each statement in its own "
        "`BEGIN … COMMIT` with `SET LOCAL statement_timeout`, no prepared statement kept",
    )
    db_pool_size: int = setting(
        "DB_POOL_SIZE",
        2,
        minimum=1,
        doc="pooled connections one instance may open, whatever the number of jobs (status and process open "
        "one more, to listen); `infra/` sets each function's from `db_pool_size`",
    )
    db_pool_timeout_seconds: float = setting(
        "DB_POOL_TIMEOUT_SECONDS",
        5.0,
        minimum=0.0,
        doc="wait for a free connection before answering `503`; a running job's write waits and tries again instead",
    )
    db_timeout_seconds: float = setting(
        "DB_TIMEOUT_SECONDS",
        10.0,
        minimum=0.1,
        doc="connect and read timeout, directly and through the Cloud SQL connector",
    )
    db_statement_timeout_seconds: float = setting(
        "DB_STATEMENT_TIMEOUT_SECONDS",
        5.0,
        minimum=0.01,
        derive=rules.statement_timeout,
        shown="5 (or half of `DB_TIMEOUT_SECONDS`)",
        doc="the server cancels a statement that runs longer (a `503`); must be below `DB_TIMEOUT_SECONDS`",
    )
    migrate_on_start: bool = setting(
        "MIGRATE_ON_START", False, doc="`1`: an instance's first connection applies pending migrations"
    )
    db_owner_role: str | None = setting(
        "DB_OWNER_ROLE",
        doc="migrations run under this role (`SET LOCAL ROLE`), so it owns every table; `infra/` grants it to "
        "each function's database user",
    )
    # -- running jobs --------------------------------------------------------------------------
    heartbeat_seconds: float = setting(
        "HEARTBEAT_SECONDS",
        30.0,
        minimum=0.1,
        doc="how often an instance writes the heartbeat of all its running jobs (one statement)",
    )
    cancel_check_seconds: float = setting(
        "CANCEL_CHECK_SECONDS",
        0.5,
        minimum=0.05,
        doc="the watcher's tick; while the listening connection is down, one read of all the instance's leases "
        "per tick carries cancels",
    )
    claim_rescan_seconds: float = setting(
        "CLAIM_RESCAN_SECONDS",
        1.0,
        minimum=0.0,
        maximum=60.0,
        doc="a next-job claim starts at the instance's remembered floor (cheap while vacuum is held back); this "
        "often the full claim runs instead and resets it: the most a job sorting before the floor (a higher "
        "priority, an earlier `runAt`) waits beyond its turn. `0`: every claim is the full one",
    )
    stalled_after_seconds: float = setting(
        "STALLED_AFTER_SECONDS",
        900.0,
        minimum=1.0,
        doc="sweep treats a running job whose heartbeat is older as crashed",
    )
    retention_days: int = setting(
        "RETENTION_DAYS",
        30,
        minimum=1,
        doc="sweep moves finished jobs older than this to the archive tables, and deletes webhook deliveries "
        "given up on longer ago",
    )
    archive_retention_days: int = setting(
        "ARCHIVE_RETENTION_DAYS",
        365,
        minimum=0,
        doc="sweep deletes archived jobs finished longer ago than this, with their events (`0`: never)",
    )
    retry_base_seconds: float = setting(
        "RETRY_BASE_SECONDS",
        10.0,
        minimum=0.0,
        doc="retry backoff: between half and all of base × 2^(attempt−1), capped",
    )
    retry_max_seconds: float = setting("RETRY_MAX_SECONDS", 3600.0, minimum=0.0, doc="the retry backoff's cap")
    job_handlers: tuple[tuple[str, str], ...] = setting(
        "JOB_HANDLERS",
        (),
        read=rules.read_handlers,
        doc="more handlers: `kind=package.module:callable`, comma-separated",
    )
    max_attempts_limit: int = setting(
        "MAX_ATTEMPTS_LIMIT",
        MAX_ATTEMPTS,
        minimum=1,
        maximum=MAX_ATTEMPTS,
        doc="the largest `maxAttempts` enqueue accepts",
    )
    # -- callers -------------------------------------------------------------------------------
    api_token: str | None = setting(
        "API_TOKEN",
        secret=True,
        doc="bearer token (the `default` tenant's): cancel and enqueue refuse everyone without a token configured",
    )
    admin_token: str | None = setting(
        "ADMIN_TOKEN",
        secret=True,
        doc="the operator's token: lists, cancels and re-runs every tenant's jobs (see Tenants)",
    )
    # (tenant, token) pairs: API_TOKEN as the default tenant, then API_TOKENS, then ADMIN_TOKEN.
    api_tokens: tuple[tuple[str, str], ...] = setting(
        "API_TOKENS",
        (),
        read=rules.read_tokens,
        secret=True,
        doc="more tokens, one tenant each: `tenant=token,...` (tenant names: letters, digits, `_.-`)",
    )
    # Enqueue without API_TOKEN/API_TOKENS: refused unless this is set (fail closed).
    allow_anonymous_enqueue: bool = setting(
        "ALLOW_ANONYMOUS_ENQUEUE",
        False,
        doc="`1`: with no token configured, enqueue takes anonymous requests (logged at start); with a token, "
        "it changes nothing",
    )
    # None: the enqueue function's default; ("*",): every registered kind.
    enqueue_kinds: tuple[str, ...] | None = setting(
        "ENQUEUE_KINDS",
        read=rules.read_kind_list,
        shown="the default kind + `JOB_HANDLERS` kinds",
        doc="the kinds callers may enqueue, comma-separated; `*` for every kind",
    )
    allowed_origins: tuple[str, ...] = setting(
        "ALLOWED_ORIGINS", ("*",), read=rules.read_origins, shown="`*`", doc="CORS origins, comma-separated"
    )
    status_url: str | None = setting(
        "STATUS_URL",
        doc="the status function's URL; enqueue then answers with `statusUrl` and `streamUrl` (the dashboard "
        "goes there, and links to the archive)",
    )
    cancel_url: str | None = setting(
        "CANCEL_URL", doc="the cancel function's URL, for the Cancel buttons of the status page and the archive"
    )
    enqueue_url: str | None = setting(
        "ENQUEUE_URL",
        doc="the enqueue function's URL, for the archive's Re-run buttons and its link to the dashboard",
    )
    max_body_bytes: int = setting("MAX_BODY_BYTES", 64 * 1024, minimum=1024, doc="larger request bodies get `413`")
    # A bulk enqueue ({"jobs": [...]}, up to 1,000 jobs) has a body limit of its own; each job
    # in it still obeys MAX_BODY_BYTES.
    bulk_max_body_bytes: int = setting(
        "BULK_MAX_BODY_BYTES",
        4 * 1024 * 1024,
        minimum=1024,
        shown="4 MiB",
        doc='a bulk enqueue\'s body limit (`{"jobs": [...]}`); each job in it still within `MAX_BODY_BYTES`',
    )
    # -- status streams ------------------------------------------------------------------------
    stream_max_seconds: float = setting(
        "STREAM_MAX_SECONDS",
        300.0,
        minimum=1.0,
        doc="a status stream closes after this (keep below the function timeout)",
    )
    stream_keepalive_seconds: float = setting(
        "STREAM_KEEPALIVE_SECONDS", 15.0, minimum=0.1, doc="keep-alive comment interval"
    )
    stream_poll_seconds: float = setting(
        "STREAM_POLL_SECONDS",
        2.0,
        minimum=0.05,
        doc="stream polling interval, only while the LISTEN connection is down",
    )
    stream_retry_ms: int = setting("STREAM_RETRY_MS", 1000, minimum=0, doc="the `retry:` hint sent to clients")
    threads: int = setting(
        "THREADS",
        8,
        minimum=1,
        derive=rules.default_threads,
        shown="4 × cores",
        doc="functions-framework's thread count: requests (and streams) in flight (see the status stream)",
    )
    max_open_streams: int = setting(
        "MAX_OPEN_STREAMS",
        6,
        minimum=1,
        derive=rules.open_streams,
        shown="`THREADS` − max(2, `THREADS`/5)",
        doc="status streams one instance holds; past it, `429` with `Retry-After`; must be below `THREADS`",
    )
    max_streams_per_caller: int = setting(
        "MAX_STREAMS_PER_CALLER",
        6,
        minimum=1,
        derive=rules.streams_per_caller,
        shown="8 (at most `MAX_OPEN_STREAMS`)",
        doc="of those, what one caller holds at once: a client address for a job's stream, a tenant for its live "
        "lists; past it, `429` `too_many_streams`",
    )
    # -- rate limits (shared/core/ratelimit.py) ------------------------------------------------
    rate_limit_window_seconds: int = setting("RATE_LIMIT_WINDOW_SECONDS", 60, minimum=1, doc="the rate limits' window")
    rate_limit_enqueue: int = setting(
        "RATE_LIMIT_ENQUEUE", 120, minimum=0, doc="enqueues per tenant per window; past it, `429`; 0: no limit"
    )
    rate_limit_cancel: int = setting(
        "RATE_LIMIT_CANCEL", 60, minimum=0, doc="cancels per tenant per window; past it, `429`; 0: no limit"
    )
    rate_limit_status: int = setting(
        "RATE_LIMIT_STATUS",
        300,
        minimum=0,
        doc="plain status reads (and the dashboard's) per client address per window; 0: no limit",
    )
    rate_limit_streams: int = setting(
        "RATE_LIMIT_STREAMS", 60, minimum=0, doc="stream opens per client address per window; 0: no limit"
    )
    # A quota of its own: a bulk request is one request for RATE_LIMIT_ENQUEUE and its jobs
    # count here. The default lets a 1,000-job request through.
    rate_limit_jobs: int = setting(
        "RATE_LIMIT_JOBS",
        5000,
        minimum=0,
        doc="jobs enqueued per tenant per window (a bulk request's jobs each count); past it, `429`; 0: no limit",
    )
    rate_limit_auth_failures: int = setting(
        "RATE_LIMIT_AUTH_FAILURES",
        20,
        minimum=0,
        doc="wrong bearer tokens per client address per window; past it, every request with a token from that "
        "address gets `429` with `Retry-After` until the window ends; 0: no limit",
    )
    rate_limit_ipv6_prefix: int = setting(
        "RATE_LIMIT_IPV6_PREFIX",
        48,
        minimum=16,
        maximum=128,
        doc="IPv6 clients are counted by their network of this many bits (64 counts each /64 apart)",
    )
    forwarded_hops: int = setting(
        "FORWARDED_HOPS",
        1,
        minimum=0,
        doc="proxies that append to `X-Forwarded-For` in front of the functions (Cloud Run's front end: 1); "
        "0: the connection's peer is the client (`make dev`)",
    )
    # -- Cloud Tasks ---------------------------------------------------------------------------
    tasks_queue: str | None = setting(
        "TASKS_QUEUE",
        doc="`projects/P/locations/L/queues/Q`: Cloud Tasks dispatch on enqueue (with `PROCESS_URL`)",
    )
    process_url: str | None = setting("PROCESS_URL", doc="the process function's URL, for Cloud Tasks")
    tasks_service_account: str | None = setting(
        "TASKS_SERVICE_ACCOUNT", doc="the service account whose OIDC token Cloud Tasks presents to process"
    )
    tasks_emulator_host: str | None = setting(
        "CLOUD_TASKS_EMULATOR_HOST",
        doc="`host:port` of a local emulator's gRPC API (the client then uses an insecure channel, no credentials)",
    )
    job_timeout_seconds: float = setting(
        "JOB_TIMEOUT_SECONDS",
        CLOUD_TASKS_MAX_DEADLINE,
        minimum=15.0,
        maximum=CLOUD_TASKS_MAX_DEADLINE,
        doc="the Cloud Task's dispatch deadline and the process function's timeout",
    )
    job_max_run_seconds: float = setting(
        "JOB_MAX_RUN_SECONDS",
        1740.0,
        minimum=1.0,
        derive=rules.max_run,
        shown="`JOB_TIMEOUT_SECONDS` − 60 (or − 10 %)",
        doc='a handler running longer is told to stop and its attempt fails "Timed out"; refused at start '
        "unless below `JOB_TIMEOUT_SECONDS`",
    )
    redispatch_after_seconds: float = setting(
        "REDISPATCH_AFTER_SECONDS",
        300.0,
        minimum=1.0,
        doc="sweep pushes a new task for a job queued this long past its run-at",
    )
    # -- webhooks (shared/core/outbox.py, netguard.py) -----------------------------------------
    webhook_secret: str | None = setting(
        "WEBHOOK_SECRET", secret=True, doc="the key that signs completion webhooks (`v1` and `v2`, see webhooks)"
    )
    # (tenant, secret) pairs: a tenant's own webhook key.
    webhook_secrets: tuple[tuple[str, str], ...] = setting(
        "WEBHOOK_SECRETS",
        (),
        read=rules.read_webhook_secrets,
        secret=True,
        doc="`tenant=secret,...`: a tenant's own webhook key, in place of `WEBHOOK_SECRET` for its jobs",
    )
    webhook_timeout_seconds: float = setting(
        "WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1, doc="one direct delivery, the whole exchange"
    )
    webhook_drain_seconds: float = setting(
        "WEBHOOK_DRAIN_SECONDS",
        10.0,
        minimum=0.0,
        doc="how long a process invocation or a sweep tick spends on the outbox (0: not at all)",
    )
    webhook_max_attempts: int = setting(
        "WEBHOOK_MAX_ATTEMPTS",
        8,
        minimum=1,
        doc="tries of one delivery before it is given up (kept, with its last error)",
    )
    callback_allow_loopback: bool = setting(
        "CALLBACK_ALLOW_LOOPBACK",
        False,
        doc="development only: `1` allows callbacks to loopback, over http too (`make dev` sets it)",
    )
    tracing: str | None = setting(
        "TRACING",
        read=rules.read_tracing,
        shown="off",
        doc="`cloud-trace`: OpenTelemetry spans to Cloud Trace; `console`: one JSON line per span on stdout "
        "(see Operating it)",
    )
    # Each registered kind's own settings, by kind name (read with these: handlers.read_settings).
    kinds: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def direct_database(self) -> DatabaseTarget:
        """Where migrations and LISTEN connect: DATABASE_DIRECT_URL, else the database."""
        return self.database_direct or self.database

    @property
    def tasks_enabled(self) -> bool:
        return bool(self.tasks_queue and self.process_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, kinds: Mapping[str, type] | None = None) -> Settings:
        """The core's settings and, for each kind named in `kinds`, that kind's declared
        settings class, read at once: one message names every bad variable."""
        reader = SettingsReader(os.environ if env is None else env)
        values = reader.read_declared(cls)
        values["kinds"] = MappingProxyType({name: reader.read_checked(cls_) for name, cls_ in (kinds or {}).items()})
        for check in rules.CHECKS:
            check(values, reader)
        reader.raise_problems()
        return cls(**values)

    def webhook_secret_for(self, tenant: str) -> str | None:
        """The key that signs this tenant's webhooks: its own, else WEBHOOK_SECRET."""
        return dict(self.webhook_secrets).get(tenant, self.webhook_secret)

    def for_kind(self, kind: str) -> Any:
        """That kind's own settings, or None when it declares none."""
        return self.kinds.get(kind)
