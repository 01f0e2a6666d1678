"""The harness that tests, `make dev` and `make bench` share: function servers listen on the
socket bound for them (no window in which another server can take their port), PostgreSQL
retries on another port when its port was taken, and no test imports conftest."""

from __future__ import annotations

import ast
import os
import socket
from pathlib import Path

import httpx
import pytest

from local import postgres
from local.functions import FUNCTIONS
from local.launcher import bind_port, start_function
from local.stack import Stack
from shared.core.db.session import open_session

TESTS = Path(__file__).parent


def listening_inode(port: int) -> int | None:
    """The inode of the socket listening on 127.0.0.1:port, from the kernel's table."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
            return int(fields[9])
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_a_function_server_listens_on_the_very_socket_it_was_handed(database_url, tmp_path):
    sock = bind_port()
    port, inode = sock.getsockname()[1], os.fstat(sock.fileno()).st_ino
    with open(tmp_path / "status.log", "wb") as output:
        server = start_function("status", {**os.environ, "DATABASE_URL": database_url}, sock=sock, output=output)
        try:
            server.wait_until_serving()
            assert listening_inode(port) == inode  # not a socket of its own on the same port
            answer = httpx.get(server.url, params={"id": "00000000-0000-4000-8000-000000000000"}, timeout=30)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        finally:
            server.stop()
    assert listening_inode(port) is None  # stopping it frees the port


def test_a_port_another_server_holds_is_refused_before_any_function_starts():
    squatter = socket.create_server(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    ports = {**dict.fromkeys(FUNCTIONS, 0), "status": taken}
    stack = Stack(database_url="postgresql://postgres@127.0.0.1:1/unused", ports=ports)
    try:
        with pytest.raises(RuntimeError, match=f"cannot serve status on port {taken}"):
            stack.start_functions()
        assert stack.servers == {}
    finally:
        stack.stop()
        squatter.close()


def test_postgres_tries_another_port_when_its_port_was_taken_meanwhile(monkeypatch):
    squatter = socket.create_server(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    ports = iter([taken])  # the first port "found free" is taken by the time PostgreSQL binds it
    found_free = postgres.free_port
    monkeypatch.setattr(postgres, "free_port", lambda: next(ports, None) or found_free())
    server = postgres.throwaway_server()
    try:
        assert server.port != taken
        server.wait_ready()
    finally:
        server.stop(mode="immediate")
        postgres.remove(server)
        squatter.close()


def test_a_durable_server_crashed_and_started_again_is_durable_still():
    """make chaos crashes its durable server and starts it again: a start that fell back to
    the tests' fast settings (fsync and synchronous commit off) lost enqueued jobs at the next
    crash (seed 448549: two jobs answered 202 were missing from the table)."""
    server = postgres.throwaway_server(durable=True)
    try:
        server.kill()
        server.start_again()
        session = open_session(server.url)
        try:
            settings = dict(
                session.run_sql(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY(:names)",
                    names=["fsync", "synchronous_commit", "full_page_writes"],
                )
            )
        finally:
            session.close()
        assert settings == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    finally:
        server.stop(mode="immediate")
        postgres.remove(server)


def test_no_test_module_imports_conftest():
    importers = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
            if any(name.split(".")[-1] == "conftest" for name in names):
                importers.append(path.name)
    assert importers == []
