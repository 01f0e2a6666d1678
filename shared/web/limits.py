"""Per-caller rate limits at the HTTP edge: who the caller is, and how many requests of each
action it may send per window (the counting is the core's, shared by every instance).

A caller with a token is its tenant, whatever address it comes from: enqueue and cancel
are counted per tenant. Status is public, so its callers are told apart by address: the
client address that Cloud Run's front end appends to X-Forwarded-For (the last entry, the
one a client cannot forge; FORWARDED_HOPS=2 with a load balancer in front as well, 0 to use
the connection's peer, as locally), an IPv6 address by its /64 (what one client is usually
given). Several people behind one NAT share a status limit; the defaults leave room for it.
"""

from __future__ import annotations

import ipaddress

import flask

from shared.core.ratelimit import RateLimiter
from shared.core.settings import Settings


class RateLimits:
    def __init__(self, settings: Settings, limiter: RateLimiter):
        self.settings = settings
        self.limiter = limiter
        self.limits = {
            "enqueue": settings.rate_limit_enqueue,
            "cancel": settings.rate_limit_cancel,
            "status": settings.rate_limit_status,
            "stream": settings.rate_limit_streams,
        }

    @classmethod
    def of(cls, service) -> RateLimits:
        return cls(service.settings, RateLimiter(service.pool, service.settings.rate_limit_window_seconds))

    def count(self, request: flask.Request, action: str, tenant: str | None = None) -> None:
        """Count this request; RateLimited (429 with Retry-After) past the caller's limit.
        `tenant`: the authenticated caller's, or None for an anonymous one (by address)."""
        caller = f"tenant:{tenant}" if tenant is not None else f"ip:{self.client_address(request)}"
        self.limiter.count(action, caller, self.limits[action])

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
                return str(ipaddress.ip_network(f"{address}/64", strict=False))
            return str(address)
        return "unknown"
