"""Outbound connections to addresses a caller chose: webhooks, and the newsletter's feeds.

A callback URL (or a feed's redirect) is chosen by whoever called us, so it must not reach
what only we can reach: the metadata server (169.254.169.254), this machine, the VPC. The
rule is checked on the addresses a name resolves to, not on its text (`2130706433`,
`0x7f000001`, `0177.0.0.1` and `[::ffff:127.0.0.1]` are all 127.0.0.1 once resolved), and
the connection goes to the very address that was checked: a second lookup could answer
differently (DNS rebinding). TLS still checks the certificate against the host name, and
the Host header and SNI carry the name.

    sock = connect_checked("hooks.example.com", 443, CALLBACKS, timeout=5)

Development receives webhooks on loopback: `Policy(allow_loopback=True)` (the setting
CALLBACK_ALLOW_LOOPBACK=1, which `make dev` and the local stack set) allows 127.0.0.0/8 and
::1, and plain http to them; nothing else private is ever allowed for callbacks.
"""

from __future__ import annotations

import heapq
import http.client
import ipaddress
import itertools
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

# Not reachable from the internet, or not meant to be: RFC 6890 and its IPv6 twin, plus
# CGNAT (100.64/10), which `ipaddress` calls neither private nor global on every version.
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
_LOOPBACK = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))
# IPv6 forms that carry an IPv4 address inside: the IPv4 address is what gets reached.
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(Exception):
    """The destination is not allowed. The message is safe for a caller to read: it names the
    rule, never an address that a name resolved to."""


@dataclass(frozen=True)
class Policy:
    schemes: tuple[str, ...] = ("https",)
    allow_loopback: bool = False  # development: a receiver on this machine (and http to it)
    allow_private: bool = False  # an operator's explicit opt-out: no address is refused

    def scheme_problem(self, scheme: str, loopback: bool) -> str | None:
        if scheme in self.schemes or (scheme == "http" and loopback and self.allow_loopback):
            return None
        return f"must be an {' or '.join(self.schemes)} URL"


CALLBACKS = Policy()
CALLBACKS_IN_DEVELOPMENT = Policy(allow_loopback=True)
FEEDS = Policy(schemes=("https", "http"))
ANYWHERE = Policy(schemes=("https", "http"), allow_private=True)


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address that an IPv4-mapped, -compatible, 6to4 or NAT64 IPv6 address reaches."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_loopback(address: IPAddress) -> bool:
    reached = embedded_ipv4(address)
    return any(reached in net for net in _LOOPBACK if net.version == reached.version)


def address_problem(address: IPAddress, policy: Policy = CALLBACKS) -> str | None:
    """Why this address may not be reached under `policy`, or None when it may."""
    if policy.allow_private:
        return None
    reached = embedded_ipv4(address)
    if policy.allow_loopback and is_loopback(reached):
        return None
    blocked = _BLOCKED_V4 if reached.version == 4 else _BLOCKED_V6
    if any(reached in net for net in blocked) or not reached.is_global:
        return "must be a public address (not loopback, private, link-local, multicast or reserved)"
    return None


def numeric_host(host: str) -> IPAddress | None:
    """The address a host written as a number stands for: an IP literal, or one of the IPv4
    spellings the C resolver accepts (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if not host or not all(c in "0123456789abcdefABCDEFxX." for c in host) or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".home.arpa")
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")


def normalised_host(host: str) -> str:
    """The host a resolver would look up, in one spelling, so that every check sees what the
    connection reaches: IDNA-mapped as Python's resolver maps it (full-width digits and letters
    to ASCII, "。" to ".", case folded, non-ASCII labels to xn--), without the final dot of a
    fully qualified name (`metadata.google.internal.` is `metadata.google.internal`).
    ValueError for a name no resolver would take."""
    if ":" in host:  # an IPv6 literal (urlsplit took its brackets off)
        return host.lower()
    try:
        ascii_host = host.encode("idna").decode("ascii").lower() if host else ""
    except UnicodeError:
        raise ValueError("not a host name") from None
    ascii_host = ascii_host.rstrip(".")
    if ascii_host and not _HOST_NAME.fullmatch(ascii_host):
        raise ValueError("not a host name")
    return ascii_host


def url_host(parts: SplitResult) -> str:
    """The normalised host of a split URL (ValueError for one no resolver would take)."""
    return normalised_host(parts.hostname or "")


def url_problem(url: object, policy: Policy = CALLBACKS, own_urls: tuple[str, ...] = ()) -> str | None:
    """What is wrong with a callback URL, judged without a DNS lookup (enqueue's check): the
    scheme, a numeric host that is not public, names that only resolve inside a network, and
    the URLs of our own functions. A name is resolved, and checked again, at send time."""
    if not isinstance(url, str) or len(url) > 2000:
        return "must be an https URL of at most 2000 characters"
    if any(ch <= " " or ch == "\x7f" for ch in url):
        # urlsplit drops tabs and newlines silently; the webhook's v2 signature is over the URL
        # as given, with newlines around it.
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
        host = url_host(parts)
    except ValueError:
        return "must be an https URL with a valid host and port"
    if not host:
        return "must be an https URL with a host"
    if port == 0:
        return "must not use port 0"
    address = numeric_host(host)
    loopback = (address is not None and is_loopback(address)) or host == "localhost" or host.endswith(".localhost")
    if problem := policy.scheme_problem(parts.scheme, loopback):
        return problem
    if parts.username or parts.password:
        return "must not carry a user name or password (sign with WEBHOOK_SECRET instead)"
    if address is not None:
        if problem := address_problem(address, policy):
            return problem
        if address.version == 4 and str(address) != host:
            return "must write an IPv4 address as four decimal numbers"
    elif not policy.allow_private and not (loopback and policy.allow_loopback):
        if loopback or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
            return "must name a public host (not localhost, a single-label or an internal name)"
    if any(_same_origin(parts, own) for own in own_urls if own):
        return "must not be one of this service's own functions"
    return None


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, url_host(parts), parts.port or default


def _same_origin(parts: SplitResult, other: str) -> bool:
    try:
        return _origin(parts) == _origin(urlsplit(other))
    except ValueError:
        return False


def resolve_checked(host: str, port: int, policy: Policy, resolver: Resolver | None = None) -> list[tuple[int, tuple]]:
    """Every (family, sockaddr) that `host` resolves to, once all of them passed the rule.
    One refused address refuses the name: a resolver that mixes a private address in with
    public ones is not to be trusted with the choice."""
    try:
        found = (resolver or socket.getaddrinfo)(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused("the host name does not resolve") from exc
    targets = []
    for family, _type, _proto, _name, sockaddr in found:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if problem := address_problem(address, policy):
            raise Refused(f"the host {problem}")
        targets.append((family, sockaddr))
    if not targets:
        raise Refused("the host name does not resolve")
    return targets


def connect_checked(
    host: str, port: int, policy: Policy, timeout: float, resolver: Resolver | None = None
) -> socket.socket:
    """A TCP connection to an address of `host` that passed the rule (the first that answers)."""
    last_error: OSError | None = None
    for family, sockaddr in resolve_checked(host, port, policy, resolver):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    assert last_error is not None
    raise last_error


def wrap_tls(
    sock: socket.socket, host: str, context: ssl.SSLContext | None = None, handshake: bool = True
) -> ssl.SSLSocket:
    """TLS over a connection made to a checked address: SNI and the certificate check use the
    host name, as they would have with a connection made by name. The TLS socket takes over
    `sock`'s descriptor (`sock` is left detached); handshake=False leaves the handshake to
    the caller."""
    return (context or ssl.create_default_context()).wrap_socket(
        sock, server_hostname=host.strip("[]"), do_handshake_on_connect=handshake
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def request_status(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    policy: Policy,
    timeout: float,
    own_urls: tuple[str, ...] = (),
    resolver: Resolver | None = None,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Send one HTTP request to a checked address and return the answer's status. Redirects
    are answers like any other (never followed). `timeout` bounds the whole exchange, not
    each read: a server that drips a byte at a time is cut off at the deadline.
    Raises Refused for a destination the policy forbids, OSError for a network failure."""
    if problem := url_problem(url, policy, own_urls):
        raise Refused(f"the URL {problem}")
    parts = urlsplit(url)
    host = url_host(parts)  # the spelling that was checked is the one connected to
    port = parts.port or _default_port(parts.scheme)
    sock: socket.socket = connect_checked(host, port, policy, timeout, resolver)
    deadline = DEADLINES.watch(sock, timeout)
    try:
        if parts.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout)
            sock = wrap_tls(sock, host, tls, handshake=False)
            DEADLINES.retarget(deadline, sock)  # the TLS socket holds the descriptor now
            sock.do_handshake()  # under the deadline too: a handshake can drip as well
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.sock = sock
        path = parts.path or "/"
        connection.request(method, f"{path}?{parts.query}" if parts.query else path, body=body, headers=headers)
        response = connection.getresponse()
        status = response.status
        response.close()
    except (OSError, http.client.HTTPException) as exc:
        if deadline.expired:
            raise TimeoutError(f"no complete answer within {timeout:g} s") from exc
        if isinstance(exc, OSError):
            raise
        raise OSError(f"bad HTTP answer: {type(exc).__name__}") from exc
    finally:
        DEADLINES.cancel(deadline)  # first: the socket is never shut once closed
        sock.close()
    if deadline.expired:  # cut off mid-answer: what was read may look whole, and is not
        raise TimeoutError(f"no complete answer within {timeout:g} s")
    return status


@dataclass(eq=False)
class Deadline:
    sock: socket.socket | None
    ended: bool = False  # expired, or cancelled once the exchange was over
    expired: bool = False


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # a blocked read or write returns at once
    except OSError:
        pass


class SocketDeadlines:
    """One thread per process that shuts each watched socket when its deadline passes, so that
    a blocked read returns: the whole-exchange bound of request_status, and the local
    launcher's cut-off of a request head that is not in by its deadline. A timer thread per
    request had cost each request the start of a thread, about 0.2 ms (half of what the guard
    adds to a request on loopback)."""

    LONGEST_WAIT = 60.0  # seconds the thread sleeps at most: a wait of years overflows

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()  # ties in time never compare two deadlines
        self._cancelled = 0  # ended entries still in the heap (they leave at their time)
        self._started = False

    def watch(self, sock: socket.socket, seconds: float) -> Deadline:
        deadline = Deadline(sock)
        with self._changed:
            if not self._started:
                threading.Thread(target=self._shut_late_sockets, name="netguard-deadlines", daemon=True).start()
                self._started = True
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._order), deadline))
            if self._heap[0][2] is deadline:  # sooner than the thread waits for: tell it
                self._changed.notify()
        return deadline

    def retarget(self, deadline: Deadline, sock: socket.socket) -> None:
        """The exchange goes on over `sock` (TLS over the watched socket, which it detached)."""
        with self._changed:
            deadline.sock = sock
            if deadline.expired:  # passed while the old socket was being wrapped
                _shut(sock)

    def cancel(self, deadline: Deadline) -> None:
        """The exchange is over: the socket is never shut after this (it may be closed, its
        descriptor reused). The entry leaves the heap at its time, or when cancelled ones
        make up most of it (the local emulator's deadlines are half an hour long)."""
        with self._changed:
            if not deadline.ended:
                deadline.ended = True
                deadline.sock = None
                self._cancelled += 1
                if self._cancelled > 64 and 2 * self._cancelled > len(self._heap):
                    self._heap = [entry for entry in self._heap if not entry[2].ended]
                    heapq.heapify(self._heap)
                    self._cancelled = 0

    def _shut_late_sockets(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].ended or self._heap[0][0] <= now):
                    _, _, deadline = heapq.heappop(self._heap)
                    if deadline.ended:
                        self._cancelled = max(0, self._cancelled - 1)
                    else:
                        deadline.ended = deadline.expired = True
                        if deadline.sock is not None:
                            _shut(deadline.sock)
                        deadline.sock = None
                wait = self._heap[0][0] - now if self._heap else self.LONGEST_WAIT
                self._changed.wait(min(wait, self.LONGEST_WAIT))


DEADLINES = SocketDeadlines()
# A forked child (gunicorn's worker) has none of its parent's threads, and may have inherited
# the lock held: it starts afresh.
os.register_at_fork(after_in_child=DEADLINES.__init__)
