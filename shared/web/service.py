"""What every function builds once per instance, at start: settings, pool, handlers.

Built when the function's module is imported, so a bad setting fails the instance at start
with one message. Nothing here connects yet: the first request opens the first connection.
"""

from __future__ import annotations

import functools
import hmac
import json
import traceback
from collections.abc import Callable, Iterable

import flask

from shared.core import log, tracing
from shared.core.db import Pool, Session, connect, refusal_reason
from shared.core.dispatch import Dispatcher
from shared.core.errors import (
    DatabaseUnavailable,
    JobQueueError,
    RateLimited,
    TooManyStreams,
    Unauthorized,
    ValidationError,
)
from shared.core.handlers import HandlerRegistry, read_settings
from shared.core.jobs import Job
from shared.core.migrate import apply_migrations
from shared.core.settings import DEFAULT_TENANT, Settings
from shared.core.storable import TOO_DEEP, nesting_problems

ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
JSON_TYPES = ("application/json",)


class Service:
    def __init__(self, name: str, settings: Settings | None = None):
        self.name = name
        self.settings = settings or read_settings()
        self.registry = HandlerRegistry.from_settings(self.settings)
        # With MIGRATE_ON_START (set by infra/), the first connection of an instance applies
        # pending migrations; concurrent cold starts wait on the migration lock, then skip.
        migrate = self._migrate_directly if self.settings.migrate_on_start else None
        self.pool = Pool(self.settings, application_name=f"jobqueue-{name}", on_first_connection=migrate)
        self.dispatcher = Dispatcher(self.settings)
        self.dispatcher.warm_up_after_fork()  # the Tasks client's import runs beside the worker's start
        tracing.configure(self.settings.tracing)  # the mode only: the SDK loads on the first request

    def _migrate_directly(self, _pooled_session) -> None:
        """Migrations take a session-level advisory lock and may run long: on a connection of
        their own to DATABASE_DIRECT_URL, never through a transaction pooler, without the
        statement timeout of the pooled connections."""
        session = Session(connect(self.settings.direct_database, 60.0, application_name="jobqueue-migrate"))
        try:
            apply_migrations(session, owner_role=self.settings.db_owner_role)
        finally:
            session.close()

    # -- responses -----------------------------------------------------------------------

    def json(self, body: dict, status: int = 200, headers: dict | None = None) -> flask.Response:
        response = flask.Response(json.dumps(body), status=status, mimetype="application/json")
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    def error(self, exc: JobQueueError) -> flask.Response:
        headers = {}
        if isinstance(exc, (DatabaseUnavailable, TooManyStreams, RateLimited)):
            headers["Retry-After"] = str(exc.retry_after_seconds)
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="jobqueue"'
        return self.json(exc.to_json(), exc.status, headers)

    def job_body(self, job: Job, **extra) -> dict:
        body = job.to_json()
        if self.settings.status_url:
            base = self.settings.status_url
            body["statusUrl"] = f"{base}{'&' if '?' in base else '?'}id={job.id}"
            body["streamUrl"] = body["statusUrl"] + "&stream=1"
        body.update(extra)
        return body

    # -- requests ------------------------------------------------------------------------

    def endpoint(self, methods: Iterable[str]) -> Callable:
        """Wrap a view: CORS preflight, 405, JSON errors (a 500 is logged as the bug it is)."""
        allowed = tuple(methods)

        def wrap(view: Callable[[flask.Request], flask.Response]) -> Callable:
            @functools.wraps(view)
            def handle(request: flask.Request) -> flask.Response:
                if request.method == "OPTIONS":
                    response = flask.Response(status=204)
                    response.headers["Access-Control-Allow-Methods"] = ", ".join((*allowed, "OPTIONS"))
                    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                    response.headers["Access-Control-Max-Age"] = "3600"
                elif request.method not in allowed:
                    response = self.json(
                        {"error": {"code": "method_not_allowed", "message": f"Use {' or '.join(allowed)}"}},
                        405,
                        {"Allow": ", ".join((*allowed, "OPTIONS"))},
                    )
                else:
                    response = self._call(view, request)
                return self._with_cors(request, response)

            return handle

        return wrap

    def _call(self, view: Callable, request: flask.Request) -> flask.Response:
        try:
            with tracing.request_span(self.name, request.headers.get("traceparent")):
                return view(request)
        except JobQueueError as exc:
            if exc.status >= 500:
                # The caller gets the generic message; the operator's line says why.
                log.warning(exc.message, function=self.name, reason=refusal_reason(exc))
            return self.error(exc)
        except Exception:  # noqa: BLE001 (the last line of defence: a 500 is a bug, logged as one)
            log.error("Unhandled error", function=self.name, traceback=traceback.format_exc())
            return self.json({"error": {"code": "internal", "message": "Internal error"}}, 500)

    def _with_cors(self, request: flask.Request, response: flask.Response) -> flask.Response:
        origins = self.settings.allowed_origins
        origin = request.headers.get("Origin")
        if "*" in origins:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin and origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    def read_json(self, request: flask.Request, allow_empty: bool = False) -> dict:
        """The body as a JSON object, or the 4xx that names what is wrong with it."""
        return self.parse_json(request, self.read_body(request, self.settings.max_body_bytes), allow_empty)

    def read_body(self, request: flask.Request, limit: int) -> bytes:
        """The raw body, or a 413 past `limit` bytes (read no further than that)."""
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"The body is over the limit of {limit} bytes")
        try:
            raw = request.stream.read(limit + 1)
        except OSError:  # the body did not arrive within the server's read timeout
            # functions-framework drains the body after the view (request.get_data()): with
            # the body taken as read, that second read does not turn this 408 into a 500.
            request._cached_data = b""
            raise RequestTimeout("The request body did not arrive in time; send it again") from None
        if len(raw) > limit:
            raise PayloadTooLarge(f"The body is over the limit of {limit} bytes")
        return raw

    def parse_json(self, request: flask.Request, raw: bytes, allow_empty: bool = False) -> dict:
        """`raw` as a JSON object, or the 4xx that names what is wrong with it."""
        if not raw.strip():
            if allow_empty:
                return {}
            raise ValidationError("The body must be a JSON object", [{"field": "body", "message": "is empty"}])
        if request.mimetype not in JSON_TYPES:
            raise UnsupportedMediaType(
                f"Send JSON with Content-Type: application/json (got {request.mimetype or 'none'!r})"
            )
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidJson("The body is not valid UTF-8") from None
        except RecursionError:
            raise ValidationError.of([("body", TOO_DEEP)]) from None
        except ValueError as exc:
            raise InvalidJson(f"The body is not valid JSON: {str(exc)[:200]}") from None
        if not isinstance(body, dict):
            raise ValidationError("The body must be a JSON object", [{"field": "body", "message": "must be an object"}])
        if problems := nesting_problems(body):
            raise ValidationError.of(problems)
        return body

    def authenticate(self, request: flask.Request, required: bool) -> str:
        """The caller's tenant, from `Authorization: Bearer <token>` (API_TOKEN, API_TOKENS).

        Every configured token is compared, in constant time, whatever matches first. With
        no token configured, `required` endpoints refuse everyone; others are open to the
        default tenant.
        """
        tokens = self.settings.api_tokens
        if not tokens:
            if required:
                raise Unauthorized("This endpoint is disabled until API_TOKEN is configured")
            return DEFAULT_TENANT
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        presented_bytes = presented.strip().encode()
        tenant = None
        for candidate, token in tokens:
            if hmac.compare_digest(presented_bytes, token.encode()) and tenant is None:
                tenant = candidate
        if scheme.lower() != "bearer" or tenant is None:
            raise Unauthorized()
        return tenant


class PayloadTooLarge(JobQueueError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(JobQueueError):
    status = 415
    code = "unsupported_media_type"


class RequestTimeout(JobQueueError):
    status = 408
    code = "request_timeout"


class InvalidJson(JobQueueError):
    status = 400
    code = "invalid_json"
