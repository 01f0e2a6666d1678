"""Per-caller rate limits at the HTTP edge: who the caller is, and how many requests of each
action it may send per window (the counting is the core's, shared by every instance).

A caller with a token is its tenant, whatever address it comes from: enqueue and cancel
are counted per tenant. Status is public, so its callers are told apart by address: the
client address that Cloud Run's front end appends to X-Forwarded-For (the last entry, the
one a client cannot forge; FORWARDED_HOPS=2 with a load balancer in front as well, 0 to use
the connection's peer, as locally), an IPv6 address by its network of RATE_LIMIT_IPV6_PREFIX
bits (48 by default: what one site is usually given, so that one allocation cannot become
65,536 callers by using each of its /64s). Several people behind one NAT share a status
limit; the defaults leave room for it.

Wrong tokens are counted per address too (RATE_LIMIT_AUTH_FAILURES a window): past the
limit, that address's every request with a token is refused (429) until the window ends,
the right token's as well, or the limit would stop nothing of a guesser who finds it.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable

import flask

from shared.core.errors import RateLimited, Unauthorized
from shared.core.ratelimit import RateLimiter
from shared.core.settings import Settings

AUTH_FAILURES = "auth-failure"
# Addresses this instance saw go past the failure limit, with when their window ends: checked
# before any token, without a database read. Bounded: a flood of addresses forgets the oldest.
MAX_REMEMBERED_BLOCKS = 10_000


class RateLimits:
    def __init__(self, settings: Settings, limiter: RateLimiter, authenticate: Callable | None = None):
        self.settings = settings
        self.limiter = limiter
        self._authenticate = authenticate
        self.limits = {
            "enqueue": settings.rate_limit_enqueue,
            "cancel": settings.rate_limit_cancel,
            "status": settings.rate_limit_status,
            "stream": settings.rate_limit_streams,
            "jobs": settings.rate_limit_jobs,  # not requests: the jobs enqueued (count with a weight)
        }
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, service) -> RateLimits:
        limiter = RateLimiter(service.pool, service.settings.rate_limit_window_seconds)
        return cls(service.settings, limiter, service.authenticate)

    def count(self, request: flask.Request, action: str, tenant: str | None = None, weight: int = 1) -> None:
        """Count this request (`weight` for "jobs": how many it enqueues); RateLimited (429 with
        Retry-After) past the caller's limit. `tenant`: the authenticated caller's, or None for
        an anonymous one (by address)."""
        caller = f"tenant:{tenant}" if tenant is not None else f"ip:{self.client_address(request)}"
        self.limiter.count(action, caller, self.limits[action], weight)

    def authenticate(self, request: flask.Request, required: bool) -> str:
        """The caller's tenant (Service.authenticate), with wrong tokens counted per address:
        RateLimited for an address past RATE_LIMIT_AUTH_FAILURES in this window."""
        limit = self.settings.rate_limit_auth_failures
        if limit <= 0 or not request.headers.get("Authorization"):
            return self._authenticate(request, required)  # no token presented: nothing guessed
        address = self.client_address(request)
        self._refuse_if_blocked(address)
        try:
            return self._authenticate(request, required)
        except Unauthorized:
            hits, seconds_left = self.limiter.hit(AUTH_FAILURES, f"ip:{address}")
            if hits > limit:
                self._block(address, seconds_left)
                raise self._too_many_failures(seconds_left) from None
            raise

    def _too_many_failures(self, seconds_left: int) -> RateLimited:
        limit, window = self.settings.rate_limit_auth_failures, self.settings.rate_limit_window_seconds
        return RateLimited(
            f"Too many failed authentications from this address: at most {limit} per {window} s; retry later",
            retry_after_seconds=seconds_left,
        )

    def _block(self, address: str, seconds_left: int) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._blocked) >= MAX_REMEMBERED_BLOCKS:
                self._blocked = {key: until for key, until in self._blocked.items() if until > now}
                while len(self._blocked) >= MAX_REMEMBERED_BLOCKS:
                    self._blocked.pop(next(iter(self._blocked)))
            self._blocked[address] = now + seconds_left

    def _refuse_if_blocked(self, address: str) -> None:
        with self._lock:
            until = self._blocked.get(address)
            left = (until - time.monotonic()) if until is not None else 0.0
            if until is not None and left <= 0:
                del self._blocked[address]
        if left > 0:
            raise self._too_many_failures(max(1, round(left)))

    def client_address(self, request: flask.Request) -> str:
        hops = self.settings.forwarded_hops
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        candidates = [forwarded[-hops]] if hops and len(forwarded) >= hops else []
        for candidate in [*candidates, request.remote_addr or ""]:
            try:
                address = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            if isinstance(address, ipaddress.IPv6Address):
                if address.ipv4_mapped is not None:
                    return str(address.ipv4_mapped)
                prefix = self.settings.rate_limit_ipv6_prefix
                return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
            return str(address)
        return "unknown"
