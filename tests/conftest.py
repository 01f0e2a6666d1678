"""The test harness: one real PostgreSQL per run, a fresh database per test.

With DATABASE_URL set, the tests use that server (creating scratch databases on it);
otherwise they start a throwaway server (see local/postgres.py), as root too. The schema
is built once in a template database; each test gets a copy of it (CREATE DATABASE ...
TEMPLATE), so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator

import pytest

from local import postgres
from local.functions import function_source
from shared.core.db import Pool, Session
from shared.core.handlers import HandlerRegistry, builtin_handlers
from shared.core.migrate import apply_migrations
from shared.core.settings import Settings
from tests.support import API_TOKEN, admin_session, with_database

# Under pytest-xdist (make test runs the suite in parallel) each worker is a process of its own
# with its own session fixtures: its own throwaway server, or, on a shared DATABASE_URL, its own
# template and database names.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
TEMPLATE = f"jobqueue_test_template_{WORKER}"
_counter = itertools.count()

# Fast knobs so that lifecycle tests take milliseconds, not minutes.
FAST_ENV = {
    "HEARTBEAT_SECONDS": "0.5",
    "CANCEL_CHECK_SECONDS": "0.05",
    "STALLED_AFTER_SECONDS": "60",
    "RETRY_BASE_SECONDS": "0",
    "RETRY_MAX_SECONDS": "0",
    "DB_POOL_SIZE": "20",
}


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """A URL to a maintenance database on a server the tests may create databases on."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield with_database(external, "postgres")
        return
    server = postgres.throwaway_server()
    try:
        yield server.url
    finally:
        server.stop(mode="immediate")
        postgres.remove(server)


@pytest.fixture(scope="session")
def template_database(admin_url: str) -> str:
    admin = admin_session(admin_url)
    admin.run_sql(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    admin.run_sql(f"CREATE DATABASE {TEMPLATE}")
    admin.close()
    template = admin_session(with_database(admin_url, TEMPLATE))
    apply_migrations(template)
    template.close()
    return TEMPLATE


@pytest.fixture
def database_url(admin_url: str, template_database: str) -> Iterator[str]:
    name = f"jobqueue_test_{os.getpid()}_{next(_counter)}"
    admin = admin_session(admin_url)
    admin.run_sql(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    try:
        yield with_database(admin_url, name)
    finally:
        admin.run_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, **FAST_ENV}


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


@pytest.fixture
def pool(settings: Settings) -> Iterator[Pool]:
    pool = Pool(settings)
    yield pool
    pool.close()


@pytest.fixture
def session(pool: Pool) -> Iterator[Session]:
    with pool.session() as session:
        yield session


@pytest.fixture
def registry() -> HandlerRegistry:
    """The built-ins plus the test handlers in tests/handlers.py."""
    from tests import handlers  # noqa: PLC0415

    return HandlerRegistry({**builtin_handlers(), **handlers.ALL})


@pytest.fixture
def function_env(env: dict[str, str]) -> dict[str, str]:
    """What the functions run with in tests: the test database, test handlers, a token."""
    kinds = ",".join(
        f"{kind}=tests.handlers:{kind}" for kind in ("noop", "count", "fail_until", "steps", "wait_for_cancel")
    )
    return {
        **env,
        "JOB_HANDLERS": kinds,
        "API_TOKEN": API_TOKEN,
        "STREAM_MAX_SECONDS": "20",
        "STREAM_KEEPALIVE_SECONDS": "1",
    }


@pytest.fixture
def make_client(monkeypatch, function_env):
    """make_client(name, **env) -> a functions-framework test client for functions/<name>."""
    import functions_framework  # noqa: PLC0415

    modules = []

    def make(name: str, **overrides: str):
        for key, value in {**function_env, **overrides}.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        app = functions_framework.create_app(target=name, source=str(function_source(name)))
        modules.append(sys.modules["main"])
        return app.test_client()

    yield make
    for module in modules:
        module.service.pool.close()
        if hasattr(module, "listener"):
            module.listener.stop()
