"""enqueue: POST a job. Queue options are top-level fields; every other field is the payload.

202 with the new job; 200 with the existing one when the idempotency key was seen before.
With Cloud Tasks configured, the job's task is pushed before answering, and `dispatch`
says "sent", or "pending" when the push failed (the Scheduler path then runs the job).
"""

import functions_framework

from shared import queue
from shared.web.service import Service

QUEUE_OPTIONS = {
    "kind": "kind",
    "priority": "priority",
    "runAt": "run_at",
    "maxAttempts": "max_attempts",
    "idempotencyKey": "idempotency_key",
    "callbackUrl": "callback_url",
}
DEFAULTS = {"kind": "newsletter", "priority": 0, "max_attempts": 3}

service = Service("enqueue")


def split_body(body: dict) -> tuple[dict, dict]:
    """(queue options, payload): null options take their defaults."""
    options = dict(DEFAULTS)
    for field, name in QUEUE_OPTIONS.items():
        if body.get(field) is not None:
            options[name] = body[field]
    payload = {key: value for key, value in body.items() if key not in QUEUE_OPTIONS}
    return options, payload


@functions_framework.http
@service.endpoint(["POST"])
def enqueue(request):
    service.require_bearer(request, service.settings.api_token, required=False)
    options, payload = split_body(service.read_json(request))
    with service.pool.session() as session:
        job, created = queue.enqueue(session, service.registry, payload=payload, **options)
    extra = {}
    if service.dispatcher.tasks_enabled and job.job_status == "queued":
        # Also on a repeated key: the task name is the job's, so this adds nothing when the
        # first push worked, and heals it when it did not.
        extra["dispatch"] = service.dispatcher.dispatch(job)
    return service.json(service.job_body(job, **extra), 202 if created else 200)
