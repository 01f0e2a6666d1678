"""Follow-ups to a job's transitions: a Cloud Task to run it, a webhook when it finishes
(from the outbox: see shared.core.outbox).

With TASKS_QUEUE and PROCESS_URL set, a queued job gets one Cloud Task that POSTs {"id"} to
the process function at the job's run_at, with an OIDC token for TASKS_SERVICE_ACCOUNT.
Task names are a hash of the job id and the attempt, so a retried enqueue cannot make two
tasks, while a retry (a new attempt) gets a new one. A failed push is logged and left to
the Scheduler path: the job stays queued and is never lost.

google-cloud-tasks is never imported without TASKS_QUEUE. With it, the client is built on a
thread of its own as soon as the serving process exists (the import takes about half a
second), so that the first enqueue does not wait for it: a request that comes sooner waits
only for the rest of that import, as it would have done the whole of it. "The serving
process": functions-framework imports the function in gunicorn's master and forks the
worker from it, and a thread does not survive a fork (the lock it held would, and the
worker's first push would wait on it for ever), so the thread starts in the forked worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from shared.core import log, netguard, outbox, tracing
from shared.core.db import Pool
from shared.core.jobs import Job, JobStatus
from shared.core.outbox import Delivery, Drained
from shared.core.settings import Settings
from shared.core.webhooks import deliver, signed_headers, webhook_body

PUSH_CONCURRENCY = 16  # tasks pushed at once after a bulk enqueue: each push is one round trip
PUSH_RETRY_SECONDS = 3.0  # how long a push is tried again while Cloud Tasks is UNAVAILABLE


def task_id(job: Job, purpose: str) -> str:
    """Cloud Tasks names allow [A-Za-z0-9_-]; the same job, attempt and purpose give the same name."""
    return "job-" + hashlib.sha256(f"{job.id}:{job.attempts}:{purpose}".encode()).hexdigest()[:40]


# google-api-core imports its asyncio REST transport for long-running operations whenever aiohttp
# is installed (the Cloud SQL connector brings it into every bundle), and with it aiohttp: about
# 190 ms of CPU, a third of the Tasks client's import, on the way to the first push, for a
# transport the synchronous client never uses. api-core treats that module as an optional extra
# (each import of it is inside `except ImportError`); None in sys.modules makes it fail to import
# as it would without aiohttp. Instances that use the connector still import aiohttp, for it.
ASYNC_REST_TRANSPORT = "google.api_core.operations_v1.transports.rest_asyncio"


def skip_async_rest_transport() -> None:
    """Keep api-core's unused asyncio transport (and aiohttp) out of the Tasks client's import."""
    sys.modules.setdefault(ASYNC_REST_TRANSPORT, None)


def _push_retry():
    """UNAVAILABLE, tried again for up to PUSH_RETRY_SECONDS. A gRPC connection left idle
    while Cloud Run throttled the instance's CPU can be found reset by the next push; the
    client sets no retry for CreateTask. Safe: a task's name is fixed, so a retry of a push
    that had landed is ALREADY_EXISTS, which counts as sent."""
    from google.api_core import exceptions, retry  # noqa: PLC0415 (loaded with the client)

    return retry.Retry(
        predicate=retry.if_exception_type(exceptions.ServiceUnavailable),
        initial=0.05,
        maximum=1.0,
        timeout=PUSH_RETRY_SECONDS,
    )


class Dispatcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._client = None
        self._lock = threading.Lock()

    @property
    def tasks_enabled(self) -> bool:
        return self.settings.tasks_enabled

    def warm_up_after_fork(self) -> bool:
        """Build the Tasks client in each process forked from this one, at once (False: no
        Cloud Tasks). Unforked (a test client), the first dispatch builds it, as before."""
        if not self.tasks_enabled:
            return False
        os.register_at_fork(after_in_child=self.warm_up)
        return True

    def warm_up(self) -> threading.Thread:
        """Build the Tasks client in the background now."""
        thread = threading.Thread(target=self._tasks_client, name="tasks-client-warm-up", daemon=True)
        thread.start()
        return thread

    def _tasks_client(self):
        with self._lock:
            if self._client is None:
                # Lazy: google-cloud-tasks costs about half a second to import.
                skip_async_rest_transport()
                from google.cloud import tasks_v2  # noqa: PLC0415

                # gRPC, the client's default transport: a push costs half of what the REST
                # transport's did (0.72 against 1.42 ms here), and a bulk enqueue's concurrent
                # pushes share one connection. grpc comes with the client's import.
                if self.settings.tasks_emulator_host:
                    import grpc  # noqa: PLC0415
                    from google.cloud.tasks_v2.services.cloud_tasks.transports import (  # noqa: PLC0415
                        CloudTasksGrpcTransport,
                    )

                    channel = grpc.insecure_channel(self.settings.tasks_emulator_host)
                    self._client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
                else:
                    self._client = tasks_v2.CloudTasksClient()
            return self._client

    def _create_task(self, name: str, http_request: dict, schedule_epoch: float | None, deadline: float) -> bool:
        from google.api_core import exceptions  # noqa: PLC0415 (loaded with the client)
        from google.protobuf import duration_pb2, timestamp_pb2  # noqa: PLC0415

        task = {"name": f"{self.settings.tasks_queue}/tasks/{name}", "http_request": http_request}
        task["dispatch_deadline"] = duration_pb2.Duration(seconds=int(deadline))
        try:
            if schedule_epoch is not None:  # inside: a time protobuf cannot hold is a failed push
                stamp = timestamp_pb2.Timestamp()
                stamp.FromNanoseconds(int(schedule_epoch * 1e9))
                task["schedule_time"] = stamp
            with tracing.span("cloudtasks.create_task", **{"cloudtasks.task": name}):
                self._tasks_client().create_task(
                    parent=self.settings.tasks_queue, task=task, timeout=10, retry=_push_retry()
                )
            return True
        except exceptions.AlreadyExists:
            return True  # this very task was pushed before (by this push's own retry, say): nothing to add
        except Exception as exc:  # noqa: BLE001 (any failure leaves the job to the Scheduler path)
            log.warning("Cloud Task push failed; the Scheduler path will pick the job up", task=name, error=str(exc))
            return False

    def dispatch(self, job: Job, purpose: str = "run") -> str:
        """Push the task that runs a queued job: "sent", "pending" (push failed) or "off"."""
        if not self.tasks_enabled:
            return "off"
        process_url = self.settings.process_url
        http_request = {
            "http_method": "POST",
            "url": process_url,
            "headers": {"Content-Type": "application/json", **tracing.task_headers(job)},
            "body": json.dumps({"id": job.id}).encode(),
        }
        if self.settings.tasks_service_account:
            http_request["oidc_token"] = {
                "service_account_email": self.settings.tasks_service_account,
                "audience": process_url,
            }
        created = self._create_task(
            task_id(job, purpose), http_request, job.run_at.timestamp(), self.settings.job_timeout_seconds
        )
        return "sent" if created else "pending"

    def dispatch_many(self, jobs: list[Job]) -> dict[str, str]:
        """Push many jobs' tasks at once (PUSH_CONCURRENCY round trips in flight): {job id:
        "sent" | "pending" | "off"}. Each push stands alone, as in `dispatch`."""
        if not jobs:
            return {}
        if len(jobs) == 1:
            return {jobs[0].id: self.dispatch(jobs[0])}
        with ThreadPoolExecutor(max_workers=min(PUSH_CONCURRENCY, len(jobs))) as pushes:
            return dict(zip((job.id for job in jobs), pushes.map(self.dispatch, jobs), strict=True))

    @property
    def callback_policy(self) -> netguard.Policy:
        return netguard.CALLBACKS_IN_DEVELOPMENT if self.settings.callback_allow_loopback else netguard.CALLBACKS

    @property
    def own_urls(self) -> tuple[str, ...]:
        """Our functions' URLs: a callback to one of them would be a request from inside."""
        urls = (self.settings.process_url, self.settings.status_url, self.settings.cancel_url)
        return tuple(url for url in urls if url)

    def callback_url_problem(self, url: object) -> str | None:
        """Enqueue's check of a callbackUrl (no DNS lookup; names are checked at send time)."""
        return netguard.url_problem(url, self.callback_policy, self.own_urls)

    def send_webhook(self, delivery: Delivery, job: Job, seconds: float) -> str | None:
        """One outbox delivery: a Cloud Task with Cloud Tasks on, else a direct POST bounded by
        `seconds`. None when it went out, else what went wrong."""
        if self.tasks_enabled:
            return self._push_webhook(delivery, job)
        timeout = max(0.1, min(self.settings.webhook_timeout_seconds, seconds))
        secret = self.settings.webhook_secret_for(job.tenant)
        return deliver(delivery.callback_url, secret, job, self.callback_policy, timeout, self.own_urls)

    def _push_webhook(self, delivery: Delivery, job: Job) -> str | None:
        """Cloud Tasks sends it (and retries it) from Google's network, outside the project's
        VPC; the name is still resolved and checked now, so that a name pointing inside is
        refused here too. The task is named after the delivery: pushing it twice adds one."""
        url = delivery.callback_url
        try:
            if problem := netguard.url_problem(url, self.callback_policy, self.own_urls):
                raise netguard.Refused(f"the URL {problem}")
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            netguard.resolve_checked(netguard.url_host(parts), port, self.callback_policy)
        except netguard.Refused as exc:
            return f"refused: {exc}"
        body = webhook_body(job)
        http_request = {
            "http_method": "POST",
            "url": url,
            "headers": signed_headers(self.settings.webhook_secret_for(job.tenant), body, url),
            "body": body,
        }
        name = "webhook-" + hashlib.sha256(f"{job.id}:{delivery.id}".encode()).hexdigest()[:40]
        if self._create_task(name, http_request, None, 30):
            return None
        return "the Cloud Task push failed"

    def drain_webhooks(self, pool: Pool, seconds: float, job_id: str | None = None) -> Drained:
        """Deliver what the outbox holds (only `job_id`'s, when given), for at most `seconds`."""
        return outbox.drain(pool, self.send_webhook, seconds, self.settings.webhook_max_attempts, job_id)

    def follow_up(self, job: Job, purpose: str = "run") -> str | None:
        """After a transition: dispatch a queued job. (A finished job's webhook is in the
        outbox, written with the transition: see drain_webhooks.)"""
        if job.job_status == JobStatus.QUEUED:
            return self.dispatch(job, purpose)
        return None

    def redispatch_waiting(self, jobs: list[Job]) -> int:
        """Sweep's part: a new task for each job that waited too long (its task may be lost).
        One name per job per REDISPATCH_AFTER_SECONDS window, so repeated sweeps add one task."""
        window = int(time.time() // self.settings.redispatch_after_seconds)
        return sum(self.dispatch(job, f"redispatch-{window}") == "sent" for job in jobs)
