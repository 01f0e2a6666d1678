"""enqueue: POST a job. Queue options are top-level fields; every other field is the payload.

202 with the new job; 200 with the existing one when the idempotency key was seen before.
With Cloud Tasks configured, the job's task is pushed before answering, and `dispatch`
says "sent", or "pending" when the push failed (the Scheduler path then runs the job).

Bulk: a body whose only key is `jobs`, a list of up to 1,000 job bodies (each as above), is
queued in one transaction (BULK_MAX_BODY_BYTES; each job within MAX_BODY_BYTES). It is one
request for RATE_LIMIT_ENQUEUE; its jobs count against RATE_LIMIT_JOBS (a single enqueue's
one job too), and past that quota the whole request is a 429 that queues nothing. 200 with
{"jobs": [...]}, an answer per job in order: the job with "status" 202 or 200 as above, or
{"status": 4xx, "error": ...} for that job alone. A request that is not such a list at all
is a 400 and queues nothing. (With other keys beside it, `jobs` is payload, as always.)

Closed by default: with no API_TOKEN/API_TOKENS, every request is refused unless
ALLOW_ANONYMOUS_ENQUEUE=1 (which the log says at start). Only the kinds in ENQUEUE_KINDS
may be enqueued; by default the default kind (the one whose registration claims it: the
newsletter) and the kinds JOB_HANDLERS adds, so `demo` (and any built-in kind added later)
is enabled only by naming it.

GET: the dashboard, the forms of the accepted kinds that bring one (each kind's form data,
from its registration), which post here and go to the job's status page; ?asset=client.js
is the JavaScript module it loads.
"""

import json

import functions_framework

from shared.core import handlers, log, operations
from shared.core.errors import JobQueueError, ValidationError
from shared.core.queue import MAX_BULK_JOBS
from shared.web import pages
from shared.web.limits import RateLimits
from shared.web.service import PayloadTooLarge, Service

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
    caller = None if anonymous else tenant
    limits.count(request, "enqueue", caller)  # a request, however many jobs it holds
    body = read_body(request)
    if list(body) == ["jobs"]:
        return enqueue_bulk(request, body["jobs"], tenant, caller)
    limits.count(request, "jobs", caller)
    options, payload = split_body(body)
    enqueued = operations.enqueue_and_dispatch(
        service.pool, accepted_kinds, service.dispatcher, payload,
        tenant=tenant, max_attempts_limit=service.settings.max_attempts_limit, **options,
    )  # fmt: skip
    extra = {"dispatch": enqueued.dispatch} if enqueued.dispatch else {}
    return service.json(service.job_body(enqueued.job, **extra), 202 if enqueued.created else 200)


def read_body(request) -> dict:
    """The body as a JSON object: a bulk one within BULK_MAX_BODY_BYTES, any other within
    MAX_BODY_BYTES (a 413, as before bulk existed, also when the large body is not JSON)."""
    raw = service.read_body(request, max(settings.max_body_bytes, settings.bulk_max_body_bytes))
    single = len(raw) <= settings.max_body_bytes
    try:
        body = service.parse_json(request, raw)
    except JobQueueError:
        if single:
            raise
        body = None
    if not single and (body is None or list(body) != ["jobs"]):
        raise PayloadTooLarge(f"The body is over the limit of {settings.max_body_bytes} bytes")
    return body


def bulk_requests(jobs) -> list[tuple[dict, dict] | JobQueueError]:
    """(options, payload) per job body, or that job's own error; a 400 for the whole request
    when `jobs` is not a list of 1 to MAX_BULK_JOBS."""
    if not isinstance(jobs, list) or not 1 <= len(jobs) <= MAX_BULK_JOBS:
        raise ValidationError.of([("jobs", f"must be a list of 1 to {MAX_BULK_JOBS} job objects")])
    requests: list[tuple[dict, dict] | JobQueueError] = []
    for item in jobs:
        if not isinstance(item, dict):
            requests.append(ValidationError.of([("body", "each job must be a JSON object")]))
        elif item.get("rerunOf") is not None:
            requests.append(
                ValidationError.of([("rerunOf", "a re-run cannot be part of a bulk request: post it alone")])
            )
        elif len(json.dumps(item)) > settings.max_body_bytes:
            requests.append(PayloadTooLarge(f"The job is over the limit of {settings.max_body_bytes} bytes"))
        else:
            requests.append(split_body(item))
    return requests


def enqueue_bulk(request, jobs, tenant: str, caller: str | None):
    requests = bulk_requests(jobs)
    valid = [(payload, options) for options, payload in (r for r in requests if not isinstance(r, JobQueueError))]
    if valid:  # the jobs quota (RATE_LIMIT_JOBS): past it, a 429 for the whole request, nothing queued
        limits.count(request, "jobs", caller, weight=len(valid))
    answers = iter(
        operations.enqueue_many_and_dispatch(
            service.pool, accepted_kinds, service.dispatcher, valid, tenant, service.settings.max_attempts_limit
        )
    )
    return service.json({"jobs": [bulk_answer(r if isinstance(r, JobQueueError) else next(answers)) for r in requests]})


def bulk_answer(answer) -> dict:
    if isinstance(answer, JobQueueError):
        return {"status": answer.status, **answer.to_json()}
    extra = {"dispatch": answer.dispatch} if answer.dispatch else {}
    return {"status": 202 if answer.created else 200, **service.job_body(answer.job, **extra)}
