"""sweep: called by Cloud Scheduler. Requeues or fails jobs whose heartbeat stopped, finishes
cancelled ones, archives old finished jobs, pushes a new Cloud Task for each requeued job
and each job that waited past REDISPATCH_AFTER_SECONDS (its task may be lost), sends the
webhooks of the jobs it finished, and answers with the counts."""

import functions_framework

from shared import queue
from shared.web.service import Service

service = Service("sweep")


@functions_framework.http
@service.endpoint(["POST"])
def sweep(request):
    settings = service.settings
    with service.pool.session() as session:
        report = queue.sweep(session, settings.stalled_after_seconds, settings.retention_days)
        changed = [queue.get_job(session, job_id) for job_id in (*report.requeued_ids, *report.finished_ids)]
        waiting = (
            queue.waiting_jobs(session, settings.redispatch_after_seconds) if service.dispatcher.tasks_enabled else []
        )
    for job in changed:
        service.dispatcher.follow_up(job)
    redispatched = service.dispatcher.redispatch_waiting([job for job in waiting if job.id not in report.requeued_ids])
    return service.json({**report.to_json(), "redispatched": redispatched})
