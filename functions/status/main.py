"""status: GET ?id=<uuid> for the job and its log lines, or a live Server-Sent Events stream
(Accept: text/event-stream, or ?stream=1) that resumes from Last-Event-ID, or, for a
browser (Accept: text/html, or ?view=page), a page that follows the job and can cancel it.
`?view=metrics` with the bearer token: the queue's figures (shared/core/metrics.py).

GET ?list=1 with Authorization: Bearer <token> lists the caller's tenant's jobs, newest
first, a page at a time; with stream=1 (or Accept: text/event-stream), a snapshot of the
first page and then every change to a job in the list's scope (shared/web/job_list.py).

This adapter only picks the view; each answer is a view in shared/web/status_views.py.
"""

import functions_framework

from shared.web.service import Service
from shared.web.status_views import StatusViews

service = Service("status")
views = StatusViews(service)
listener = views.listener  # the instance's job-events subscription (tests stop it)


def pick_view(request):
    if "asset" in request.args:
        return views.asset
    if request.args.get("view") == "archive":
        return views.archive
    if request.args.get("list") in ("1", "true"):
        return views.job_list
    if request.args.get("view") == "metrics":
        return views.metrics
    return views.job


@functions_framework.http
@service.endpoint(["GET"])
def status(request):
    return pick_view(request)(request)
