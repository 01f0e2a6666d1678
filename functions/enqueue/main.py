"""enqueue: POST a job. Queue options are top-level fields; every other field is the payload.

202 with the new job; 200 with the existing one when the idempotency key was seen before.
With Cloud Tasks configured, the job's task is pushed before answering, and `dispatch`
says "sent", or "pending" when the push failed (the Scheduler path then runs the job).

Closed by default: with no API_TOKEN/API_TOKENS, every request is refused unless
ALLOW_ANONYMOUS_ENQUEUE=1 (which the log says at start). Only the kinds in ENQUEUE_KINDS
may be enqueued; by default the default kind (the one whose registration claims it: the
newsletter) and the kinds JOB_HANDLERS adds, so `demo` (and any built-in kind added later)
is enabled only by naming it.

GET: the dashboard, the forms of the accepted kinds that bring one (each kind's form data,
from its registration), which post here and go to the job's status page; ?asset=client.js
is the JavaScript module it loads.
"""

import functions_framework

from shared.core import handlers, log, operations
from shared.web import pages
from shared.web.limits import RateLimits
from shared.web.service import Service

# The contract's top-level option fields, by the core's argument names; a null option is
# left out, so it takes the core's default.
QUEUE_OPTIONS = {
    "kind": "kind",
    "priority": "priority",
    "runAt": "run_at",
    "maxAttempts": "max_attempts",
    "idempotencyKey": "idempotency_key",
    "callbackUrl": "callback_url",
    "rerunOf": "rerun_of",  # re-run that failed or cancelled job (its kind and payload)
}
DEFAULT_KIND = handlers.default_kind()  # what a body that names no kind asks for

service = Service("enqueue")
settings = service.settings
accepted_kinds = service.registry.restricted_to(
    settings.enqueue_kinds or (*filter(None, [DEFAULT_KIND]), *(kind for kind, _ in settings.job_handlers))
)
anonymous = not settings.api_tokens and settings.allow_anonymous_enqueue
limits = RateLimits.of(service)
if not settings.api_tokens:
    log.warning(
        "enqueue is open to anyone: ALLOW_ANONYMOUS_ENQUEUE is set and no API_TOKEN or API_TOKENS"
        if anonymous
        else "enqueue refuses every request: no API_TOKEN or API_TOKENS (ALLOW_ANONYMOUS_ENQUEUE=1 opens it)",
        function="enqueue",
    )


def split_body(body: dict) -> tuple[dict, dict]:
    """(queue options, payload)."""
    options = {"kind": DEFAULT_KIND} if DEFAULT_KIND else {}
    options.update({name: body[field] for field, name in QUEUE_OPTIONS.items() if body.get(field) is not None})
    payload = {key: value for key, value in body.items() if key not in QUEUE_OPTIONS}
    return options, payload


def dashboard(request):
    if "asset" in request.args:
        pages.standalone(request, "asset")
        return pages.asset_response(request.args["asset"])
    limits.count(request, "status")  # a database read, counted per address like status reads
    with service.pool.session() as session:
        forms = handlers.kind_forms(session, accepted_kinds.kinds)
    return pages.dashboard(service.settings, forms, DEFAULT_KIND)


@functions_framework.http
@service.endpoint(["GET", "POST"])
def enqueue(request):
    if request.method == "GET":
        return dashboard(request)
    tenant = limits.authenticate(request, required=not anonymous)
    limits.count(request, "enqueue", None if anonymous else tenant)
    options, payload = split_body(service.read_json(request))
    enqueued = operations.enqueue_and_dispatch(
        service.pool, accepted_kinds, service.dispatcher, payload,
        tenant=tenant, max_attempts_limit=service.settings.max_attempts_limit, **options,
    )  # fmt: skip
    extra = {"dispatch": enqueued.dispatch} if enqueued.dispatch else {}
    return service.json(service.job_body(enqueued.job, **extra), 202 if enqueued.created else 200)
