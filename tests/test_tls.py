"""TLS to a directly connected database, as libpq's sslmode (`?sslmode=` in DATABASE_URL):
against a real PostgreSQL with ssl=on and a self-signed certificate made here, and against
the tests' own server, which speaks no TLS. pg_stat_ssl says what the server saw."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from local import postgres
from shared.core.db import connection
from shared.core.errors import DatabaseUnavailable, SettingsError
from shared.core.settings import Settings

CERT_NAME = "db.example"  # not the address the tests connect to: verify-full must refuse it


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[str, Path]]:
    """(its URL, its certificate): a throwaway PostgreSQL that speaks TLS."""
    # Not under pytest's tmp_path (0700 as root): the server may run as nobody and must read these.
    files = Path(tempfile.mkdtemp(prefix="jobqueue-tls-"))
    os.chmod(files, 0o755)
    cert, key = files / "server.crt", files / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={CERT_NAME}",
         "-addext", f"subjectAltName=DNS:{CERT_NAME}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)  # PostgreSQL refuses a key others may read
    if os.geteuid() == 0:
        os.chown(key, pwd.getpwnam("nobody").pw_uid, -1)
    server = postgres.throwaway_server(options=f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}")
    try:
        yield server.url, cert
    finally:
        server.stop()
        postgres.remove(server)
        shutil.rmtree(files, ignore_errors=True)


def uses_tls(url: str) -> bool:
    """Connect as the functions do; whether the server saw TLS on that connection."""
    conn = connection.connect(Settings.from_env({"DATABASE_URL": url}).database, timeout=10)
    try:
        return conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0]
    finally:
        conn.close()


def test_prefer_is_the_default_and_takes_tls_when_the_server_offers_it(tls_server, admin_url):
    url, _ = tls_server
    assert uses_tls(url) and uses_tls(url + "?sslmode=prefer")
    assert not uses_tls(admin_url)  # the tests' own server speaks no TLS: plain text, as libpq's prefer


def test_require_and_disable(tls_server, admin_url):
    url, _ = tls_server
    assert uses_tls(url + "?sslmode=require")
    assert not uses_tls(url + "?sslmode=disable")
    with pytest.raises(DatabaseUnavailable):
        uses_tls(admin_url + "?sslmode=require")


def test_verify_ca_checks_the_certificate_and_verify_full_its_name_too(tls_server):
    url, cert = tls_server
    assert uses_tls(f"{url}?sslmode=verify-ca&sslrootcert={cert}")
    with pytest.raises(DatabaseUnavailable) as unknown_ca:
        uses_tls(url + "?sslmode=verify-ca")  # the system's CAs never signed it
    assert "certificate verify failed" in str(unknown_ca.value.__cause__)
    with pytest.raises(DatabaseUnavailable) as wrong_name:
        uses_tls(f"{url}?sslmode=verify-full&sslrootcert={cert}")  # made for db.example, reached at 127.0.0.1
    assert "certificate verify failed" in str(wrong_name.value.__cause__)


def test_one_tls_context_per_process_not_one_per_connection(tls_server):
    """Building a context reads the system's CA store: 35 ms of CPU a connection, when pg8000
    built one for each (twice on a cold start)."""
    url, _ = tls_server
    uses_tls(url)
    built = connection._tls_context.cache_info().misses
    for _ in range(3):
        assert uses_tls(url)
    assert connection._tls_context.cache_info().misses == built


@pytest.mark.parametrize("mode", ["verify", "allow", "on", ""])
def test_an_unknown_sslmode_is_refused_at_start_naming_it(mode):
    with pytest.raises(SettingsError, match="DATABASE_URL sslmode must be one of"):
        Settings.from_env({"DATABASE_URL": f"postgresql://u@h/db?sslmode={mode}"})
