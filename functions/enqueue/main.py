"""enqueue: POST a job. Queue options are top-level fields; every other field is the payload.

202 with the new job; 200 with the existing one when the idempotency key was seen before.
With Cloud Tasks configured, the job's task is pushed before answering, and `dispatch`
says "sent", or "pending" when the push failed (the Scheduler path then runs the job).
"""

import functions_framework

from shared.core import operations
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
}
DEFAULT_KIND = "newsletter"  # the seed's body names no kind: it is a newsletter request

service = Service("enqueue")


def split_body(body: dict) -> tuple[dict, dict]:
    """(queue options, payload)."""
    options = {"kind": DEFAULT_KIND}
    options.update({name: body[field] for field, name in QUEUE_OPTIONS.items() if body.get(field) is not None})
    payload = {key: value for key, value in body.items() if key not in QUEUE_OPTIONS}
    return options, payload


@functions_framework.http
@service.endpoint(["POST"])
def enqueue(request):
    tenant = service.authenticate(request, required=False)
    options, payload = split_body(service.read_json(request))
    enqueued = operations.enqueue_and_dispatch(
        service.pool, service.registry, service.dispatcher, payload,
        tenant=tenant, max_attempts_limit=service.settings.max_attempts_limit, **options,
    )  # fmt: skip
    extra = {"dispatch": enqueued.dispatch} if enqueued.dispatch else {}
    return service.json(service.job_body(enqueued.job, **extra), 202 if enqueued.created else 200)
