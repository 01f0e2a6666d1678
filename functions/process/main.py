"""process: claim one job (the named one, or the next due) and run it to the end.

The request stays open until the job ends: Cloud Run throttles the CPU once a response is
sent, so there is no answering first and working after. Cloud Tasks delivers at least
once, so a named job that is running or finished is reported as skipped, never run again.
"""

import flask
import functions_framework

from shared import queue
from shared.runner import Runner
from shared.web.service import Service

service = Service("process")
runner = Runner(service.pool, service.registry, service.settings)


def skipped(job_id: str):
    with service.pool.session() as session:
        job = queue.get_job(session, job_id)
    if job.job_status == "queued":
        reason = "not_due"
    elif job.job_status == "running":
        reason = "running"
    else:
        reason = "finished"
    return service.json(service.job_body(job, skipped=True, reason=reason))


@functions_framework.http
@service.endpoint(["POST"])
def process(request):
    body = service.read_json(request, allow_empty=True)
    if "id" in body:  # a Cloud Task names its job; a null or malformed id is refused, not ignored
        job_id = queue.parse_job_id(body["id"])
        ran = runner.run_named(job_id)
        if ran is None:
            return skipped(job_id)
    else:
        ran = runner.run_next()
        if ran is None:
            return flask.Response(status=204)  # nothing due
    if ran.outcome != "lost":  # a retry gets its task; a finished job, its webhook
        service.dispatcher.follow_up(ran.job)
    return service.json(service.job_body(ran.job, outcome=ran.outcome))
