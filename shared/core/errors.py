"""One exception base for the core; each subclass knows its HTTP status and error code.

The HTTP adapters turn any of these into `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations


class JobQueueError(Exception):
    status = 500
    code = "internal"
    default_message = "Internal error"

    def __init__(self, message: str | None = None, details: list[dict] | None = None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details or []

    def to_json(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class ValidationError(JobQueueError):
    """Bad input; `details` names each bad field as {"field", "message"}."""

    status = 400
    code = "invalid_request"
    default_message = "The request is not valid"

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ValidationError:
        details = [{"field": field, "message": message} for field, message in problems]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return cls(f"Invalid request: {summary}", details)


class Unauthorized(JobQueueError):
    status = 401
    code = "unauthorized"
    default_message = "A valid bearer token is required"


class NotFound(JobQueueError):
    status = 404
    code = "not_found"
    default_message = "No job with that id"


class Conflict(JobQueueError):
    status = 409
    code = "conflict"
    default_message = "The job is not in a state that allows this"


class IdempotencyConflict(Conflict):
    """A repeated idempotency key with a request that differs from the one that used it."""

    code = "idempotency_key_reused"
    default_message = "This idempotency key was used for a different request"


class DatabaseUnavailable(JobQueueError):
    """The database cannot be reached or the pool is exhausted; the client should retry."""

    status = 503
    code = "unavailable"
    default_message = "The job database is unavailable; retry shortly"
    retry_after_seconds = 5


class TooManyStreams(JobQueueError):
    status = 429
    code = "too_many_streams"
    default_message = "This instance holds as many status streams as it may; retry shortly"
    retry_after_seconds = 2


class RateLimited(JobQueueError):
    """A caller past its rate limit; Retry-After says when its window ends."""

    status = 429
    code = "rate_limited"
    default_message = "Too many requests; retry later"

    def __init__(self, message: str | None = None, retry_after_seconds: int = 1):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class LeaseLost(JobQueueError):
    """The invocation no longer owns its job (swept and claimed again, or finished elsewhere)."""

    code = "lease_lost"
    default_message = "This invocation no longer holds the job's lease"


class JobCancelled(Exception):
    """A handler may raise this (ctx.raise_if_cancelled) to stop at once on a cancel request."""


class SettingsError(Exception):
    """Raised at start when the environment is incomplete; names every bad variable."""
