"""process: claim one job (the named one, or the next due) and run it to the end.

The request stays open until the job ends: Cloud Run throttles the CPU once a response is
sent, so there is no answering first and working after. Cloud Tasks delivers at least
once, so a named job that is running or finished is reported as skipped, never run again.
A GET is a POST with no body (the seed's Scheduler and curl call process with GET): its
body, if any, is not read.
"""

import flask
import functions_framework

from shared.core import operations, queue
from shared.core.runner import Runner
from shared.web.service import Service

service = Service("process")
runner = Runner(service.pool, service.registry, service.settings)


@functions_framework.http
@service.endpoint(["GET", "POST"])
def process(request):
    body = service.read_json(request, allow_empty=True) if request.method == "POST" else {}
    # A Cloud Task names its job; a null or malformed id is refused, not ignored.
    job_id = queue.parse_job_id(body["id"]) if "id" in body else None
    ran = operations.run_and_follow_up(runner, service.dispatcher, job_id)
    if ran is not None:
        return service.json(service.job_body(ran.job, outcome=ran.outcome))
    if job_id is None:
        return flask.Response(status=204)  # nothing due
    with service.pool.session() as session:
        job = queue.get_job(session, job_id)
    return service.json(service.job_body(job, skipped=True, reason=operations.skipped_reason(job)))
