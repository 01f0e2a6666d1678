"""sweep: called by Cloud Scheduler. Requeues or fails jobs whose heartbeat stopped, finishes
cancelled ones, archives old finished jobs, and answers with the counts."""

import functions_framework

from shared import queue
from shared.web.service import Service

service = Service("sweep")


@functions_framework.http
@service.endpoint(["POST"])
def sweep(request):
    with service.pool.session() as session:
        report = queue.sweep(session, service.settings.stalled_after_seconds, service.settings.retention_days)
    return service.json(report.to_json())
