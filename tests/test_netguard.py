"""The guard on outbound connections to caller-chosen addresses (shared.core.netguard): what
it refuses, that it refuses before any connection is made, that it connects to the address
it checked, and that it follows no redirect. Traffic goes to loopback only: the forbidden
addresses are only ever handed to the guard (and a stub resolver), never connected to."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.core import netguard, webhooks
from shared.core.jobs import Job
from shared.core.netguard import CALLBACKS, CALLBACKS_IN_DEVELOPMENT, FEEDS, Refused
from tests import netspy

# The list: each was accepted as a callbackUrl.
REFUSED_AT_ENQUEUE = [
    "https://169.254.169.254/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://10.0.0.1/",
    "https://2130706433/",
    "https://0177.0.0.1/",
    "https://0x7f000001/",
    "https://127.1/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::a9fe:a9fe]/",  # IPv4-compatible
    "https://[2002:a9fe:a9fe::1]/",  # 6to4
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "https://100.64.0.1/",  # CGNAT
    "https://192.168.1.1/",
    "https://172.16.0.1/",
    "https://[fd00::1]/",
    "https://[fe80::1]/",
    "https://224.0.0.1/",
    "https://255.255.255.255/",
    "https://0.0.0.0/",
    "https://[::]/",
    "https://[::1]/",
    "https://localhost/",
    "https://metadata/",
    "http://127.0.0.1/",
    "http://localhost:8080/",
    "http://[::1]/",
    "http://hooks.example.com/",  # plain http anywhere else
    "https://user:secret@hooks.example.com/",
    "ftp://hooks.example.com/",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("url", REFUSED_AT_ENQUEUE)
def test_enqueue_refuses_every_non_public_or_non_https_callback(url):
    assert netguard.url_problem(url, CALLBACKS) is not None


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?y=1", "https://8.8.8.8/", "https://[2606:4700::1111]/"])
def test_enqueue_accepts_https_to_public_hosts(url):
    assert netguard.url_problem(url, CALLBACKS) is None


def test_loopback_is_a_development_opt_in_and_nothing_else_private_is():
    for url in ("http://127.0.0.1:9000/hook", "http://localhost/", "http://[::1]/", "https://127.0.0.1/"):
        assert netguard.url_problem(url, CALLBACKS_IN_DEVELOPMENT) is None
    for url in ("https://169.254.169.254/", "https://10.0.0.1/", "http://hooks.example.com/", "https://2130706433/"):
        assert netguard.url_problem(url, CALLBACKS_IN_DEVELOPMENT) is not None


def test_a_callback_to_one_of_our_own_functions_is_refused():
    own = ("http://127.0.0.1:8082/",)
    assert netguard.url_problem("http://127.0.0.1:8082/x", CALLBACKS_IN_DEVELOPMENT, own) is not None
    assert netguard.url_problem("http://127.0.0.1:9000/x", CALLBACKS_IN_DEVELOPMENT, own) is None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "169.254.169.254", "10.1.2.3", "100.100.100.100", "::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1",
     "64:ff9b::7f00:1", "2002:7f00:1::", "::7f00:1", "fc00::1", "ff02::1", "192.0.2.1", "198.18.0.1", "240.0.0.1"],
)  # fmt: skip
def test_resolved_addresses_that_are_not_public_are_refused(address):
    assert netguard.address_problem(ipaddress.ip_address(address), CALLBACKS) is not None


def test_the_numeric_spellings_of_loopback_are_loopback():
    for host in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1"):
        assert netguard.numeric_host(host) == ipaddress.IPv4Address("127.0.0.1"), host
    assert netguard.numeric_host("hooks.example.com") is None
    assert netguard.numeric_host("cafe.be") is None


def test_a_name_that_resolves_to_the_metadata_server_is_refused_before_any_connection(monkeypatch):
    with netspy.hosts({"hooks.example.com": ["169.254.169.254"]}, monkeypatch) as looked_up, netspy.connects() as seen:
        with pytest.raises(Refused, match="public address"):
            netguard.request_status("POST", "https://hooks.example.com/hook", b"{}", {}, CALLBACKS, timeout=2)
    assert looked_up == ["hooks.example.com"]  # it was resolved, as at send time
    assert seen == []  # and nothing was connected to


def test_one_private_address_among_public_ones_refuses_the_name(monkeypatch):
    with netspy.hosts({"hooks.example.com": ["93.184.216.34", "10.0.0.1"]}, monkeypatch), netspy.connects() as seen:
        with pytest.raises(Refused):
            netguard.connect_checked("hooks.example.com", 443, CALLBACKS, timeout=1)
    assert seen == []


def test_the_webhook_sender_refuses_a_rebound_name_without_connecting(monkeypatch):
    job = Job.from_row({"id": "00000000-0000-0000-0000-000000000001", "job_status": "completed", "payload": {}})
    with netspy.hosts({"hooks.example.com": ["::ffff:169.254.169.254"]}, monkeypatch), netspy.connects() as seen:
        problem = webhooks.deliver("https://hooks.example.com/h", "secret", job, CALLBACKS, timeout=2)
    assert problem is not None and problem.startswith("refused") and "169.254" not in problem
    assert seen == []


def test_planted_bug_a_guard_that_checks_nothing_is_caught_by_the_connect_watch(monkeypatch):
    """The no-connection check can fail: with the address rule switched off, the same call
    connects (to loopback, a stand-in for the forbidden address, so no traffic leaves)."""
    monkeypatch.setattr(netguard, "address_problem", lambda address, policy=CALLBACKS: None)
    with netspy.hosts({"hooks.example.com": ["127.0.0.1"]}, monkeypatch), netspy.connects() as seen:
        with pytest.raises(OSError):
            netguard.request_status("POST", f"https://hooks.example.com:{free_port()}/", b"", {}, CALLBACKS, 1)
    assert seen and seen[0][0] == "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Recorder:
    """A loopback HTTP server that answers with `status` (and a Location) and records each request."""

    def __init__(self, status: int = 200, location: str | None = None):
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append(
                    {"path": self.path, "host": self.headers["Host"], "body": self.rfile.read(length)}
                )
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def make(*args, **kwargs) -> Recorder:
        made.append(Recorder(*args, **kwargs))
        return made[-1]

    yield make
    for recorder in made:
        recorder.close()


def test_a_redirect_is_an_answer_never_followed(recorders):
    internal = recorders()
    redirector = recorders(302, location=internal.url("/internal-admin"))
    job = Job.from_row({"id": "00000000-0000-0000-0000-000000000002", "job_status": "completed", "payload": {}})
    problem = webhooks.deliver(redirector.url(), "secret", job, CALLBACKS_IN_DEVELOPMENT, timeout=5)
    assert problem == "HTTP 302 (redirects are not followed)"
    assert len(redirector.requests) == 1 and internal.requests == []


def test_the_connection_goes_to_the_checked_address_with_the_name_in_the_host_header(recorders, monkeypatch):
    receiver = recorders()
    with netspy.hosts({"hooks.localhost": ["127.0.0.1"]}, monkeypatch) as looked_up, netspy.connects() as seen:
        status = netguard.request_status(
            "POST", receiver.url(host="hooks.localhost"), b"{}", {}, CALLBACKS_IN_DEVELOPMENT, timeout=5
        )
    assert status == 200
    assert looked_up == ["hooks.localhost"]  # resolved once: no second lookup to race
    assert [address[0] for address in seen] == ["127.0.0.1"]
    assert receiver.requests[0]["host"] == f"hooks.localhost:{receiver.port}"


def drip_server(tls: ssl.SSLContext | None = None):
    """(url, stop): a server that answers a status line, then a header line every 0.2 s for
    ever: no single read ever waits long enough to time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip():
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"X-Drip: 1\r\n")
                except OSError:
                    break
            conn.close()

    threading.Thread(target=drip, daemon=True).start()

    def close() -> None:
        stop.set()
        listener.close()

    scheme = "https" if tls is not None else "http"
    return f"{scheme}://hooks.localhost:{listener.getsockname()[1]}/", close


@pytest.fixture
def dripping_url(monkeypatch):
    url, close = drip_server()
    with netspy.hosts({"hooks.localhost": ["127.0.0.1"]}, monkeypatch):
        yield url
    close()


def test_the_whole_exchange_is_bounded_even_against_a_server_that_drips(dripping_url):
    started = time.monotonic()
    with pytest.raises(OSError):
        netguard.request_status("POST", dripping_url, b"{}", {}, CALLBACKS_IN_DEVELOPMENT, 1.0)
    assert time.monotonic() - started < 5  # the deadline (1 s), not the drip, ended it


def test_the_whole_exchange_is_bounded_over_tls_too(tmp_path, monkeypatch):
    """TLS takes over the connection's descriptor: the deadline follows it there."""
    cert, key = make_certificate(tmp_path, "hooks.localhost")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    url, close = drip_server(server)
    started = time.monotonic()
    try:
        with netspy.hosts({"hooks.localhost": ["127.0.0.1"]}, monkeypatch), pytest.raises(OSError):
            trusting = ssl.create_default_context(cafile=cert)
            netguard.request_status("POST", url, b"{}", {}, CALLBACKS_IN_DEVELOPMENT, 1.0, tls=trusting)
        assert time.monotonic() - started < 5  # the deadline (1 s), not the drip, ended it
    finally:
        close()


def test_a_short_deadline_is_kept_while_a_longer_one_is_waited_for(dripping_url):
    """One thread keeps every exchange's deadline: one that comes later but ends sooner still
    ends on time (against a server that drips, only the deadline can end it)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (the backlog), never answers: the long exchange waits on it
    outcomes: dict[str, float] = {}

    def exchange(name: str, url: str, seconds: float) -> None:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            netguard.request_status("POST", url, b"{}", {}, CALLBACKS_IN_DEVELOPMENT, seconds)
        outcomes[name] = time.monotonic() - started

    watched = len(netguard.DEADLINES._heap)
    long = threading.Thread(target=exchange, args=("long", f"http://127.0.0.1:{silent.getsockname()[1]}/", 8.0))
    long.start()
    try:
        waited_for = time.monotonic() + 10
        while len(netguard.DEADLINES._heap) == watched and time.monotonic() < waited_for:
            time.sleep(0.01)  # until the long deadline is the one the thread waits for
        exchange("short", dripping_url, 1.0)
        long.join(timeout=30)
        assert outcomes["short"] < 5 and 7.5 < outcomes["long"] < 30, outcomes
    finally:
        silent.close()


def test_feeds_may_be_http_but_not_private_unless_the_operator_opts_out():
    assert netguard.url_problem("http://feeds.example.com/rss", FEEDS) is None
    assert netguard.url_problem("http://10.0.0.5/rss", FEEDS) is not None
    assert netguard.url_problem("http://10.0.0.5/rss", netguard.ANYWHERE) is None


def make_certificate(tmp_path, name: str) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def tls_receiver(tmp_path):
    """An https receiver on loopback with a certificate for hooks.localhost; records the SNI."""
    cert, key = make_certificate(tmp_path, "hooks.localhost")
    recorder = Recorder()
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    recorder.server.socket = context.wrap_socket(recorder.server.socket, server_side=True)
    recorder.server_names = server_names
    recorder.cert = cert
    yield recorder
    recorder.close()


def test_tls_to_the_checked_address_carries_the_name_in_sni_and_checks_the_certificate_against_it(
    tls_receiver, monkeypatch
):
    trusting = ssl.create_default_context(cafile=tls_receiver.cert)
    url = f"https://hooks.localhost:{tls_receiver.port}/hook"
    with netspy.hosts({"hooks.localhost": ["127.0.0.1"]}, monkeypatch):
        status = netguard.request_status("POST", url, b"{}", {}, CALLBACKS_IN_DEVELOPMENT, 5, tls=trusting)
    assert status == 200
    assert tls_receiver.server_names == ["hooks.localhost"]
    assert tls_receiver.requests[0]["host"] == f"hooks.localhost:{tls_receiver.port}"
    # The same address under another name: the certificate does not match, nothing is sent.
    with netspy.hosts({"other.localhost": ["127.0.0.1"]}, monkeypatch):
        with pytest.raises(ssl.SSLCertVerificationError):
            netguard.request_status(
                "POST", url.replace("hooks.localhost", "other.localhost"), b"{}", {}, CALLBACKS_IN_DEVELOPMENT, 5,
                tls=ssl.create_default_context(cafile=tls_receiver.cert),
            )  # fmt: skip
    assert len(tls_receiver.requests) == 1
