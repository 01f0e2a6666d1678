"""sweep: called by Cloud Scheduler. Requeues or fails jobs whose heartbeat stopped, finishes
cancelled ones, archives old finished jobs, pushes a new Cloud Task for each requeued job
and each job that waited past REDISPATCH_AFTER_SECONDS (its task may be lost), sends the
webhooks of the jobs it finished, and answers with the counts."""

import functions_framework

from shared.core import operations
from shared.web.service import Service

service = Service("sweep")


@functions_framework.http
@service.endpoint(["POST"])
def sweep(request):
    swept = operations.sweep_and_redispatch(service.pool, service.dispatcher, service.settings)
    return service.json(swept.to_json())
