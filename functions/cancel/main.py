"""cancel: POST {"generationId": "<uuid>"} (or "id") with Authorization: Bearer <API_TOKEN>.

A queued job is cancelled at once; a running one is asked to stop and its invocation ends
it within about a second. 409 for a job that already completed or failed. Only the
caller's tenant's jobs (every tenant's for ADMIN_TOKEN): another tenant's job is a 404.
"""

import functions_framework

from shared.core import operations, queue
from shared.core.errors import Conflict
from shared.core.queue import CancelOutcome
from shared.web.limits import RateLimits
from shared.web.service import Service

service = Service("cancel")
limits = RateLimits.of(service)


@functions_framework.http
@service.endpoint(["POST"])
def cancel(request):
    tenant = limits.authenticate(request, required=True)
    limits.count(request, "cancel", tenant)
    body = service.read_json(request)
    field = "generationId" if "generationId" in body else "id"
    job_id = queue.parse_job_id(body.get(field), field=field)
    outcome, job = operations.cancel_and_notify(service.pool, service.dispatcher, job_id, tenant)
    if outcome is CancelOutcome.ALREADY_FINISHED:
        raise Conflict(f"Job {job_id} already {job.job_status}; there is nothing to cancel")
    return service.json(service.job_body(job, outcome=outcome.value))
