"""JobQueueClient: enqueue (one or many), status, follow (a resumable SSE stream), cancel, list,
rerun, stats.

Following uses httpx-sse, a maintained SSE parser, and reconnects by itself with the last
event id it saw, so a dropped connection loses and repeats nothing.

A 429 or 503 is retried after its Retry-After (at most `max_retries` times, each wait capped
at `max_retry_wait` seconds) for the requests that are safe to repeat: status, cancel, and
an enqueue whose job (every job, in bulk) carries an idempotencyKey. Any other request
answers with the error: sent twice, it could queue its job twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from httpx_sse import connect_sse

RETRYABLE = (429, 502, 503, 504)
RETRY_AFTER = (429, 503)  # the answers that say "the same request later"


class JobQueueHTTPError(Exception):
    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        try:
            self.body = response.json()
            message = self.body["error"]["message"]
        except (ValueError, KeyError, TypeError):
            self.body, message = None, response.text[:200]
        super().__init__(f"HTTP {response.status_code}: {message}")


@dataclass
class StreamEvent:
    event: str
    id: str | None
    data: dict = field(default_factory=dict)


@dataclass
class JobQueueClient:
    enqueue_url: str
    status_url: str
    cancel_url: str
    process_url: str | None = None
    token: str | None = None
    timeout: float = 30.0
    max_retries: int = 3
    max_retry_wait: float = 60.0

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _send(self, method: str, url: str, safe: bool, **kwargs) -> httpx.Response:
        """The response; a 429 or 503 to a request `safe` to repeat is sent again after its
        Retry-After."""
        for attempt in range(self.max_retries + 1):
            response = httpx.request(method, url, **kwargs)
            if not safe or response.status_code not in RETRY_AFTER or attempt == self.max_retries:
                return response
            time.sleep(min(self.max_retry_wait, _retry_after(response)))
        return response

    def _post(self, url: str, body: dict, timeout: float | None = None, safe: bool = False) -> dict:
        response = self._send("POST", url, safe, json=body, headers=self._headers(), timeout=timeout or self.timeout)
        if response.status_code == 204:
            return {}
        if response.status_code >= 400:
            raise JobQueueHTTPError(response)
        return response.json()

    def enqueue(self, payload: dict, **options) -> dict:
        body = {**payload, **options}
        return self._post(self.enqueue_url, body, safe=body.get("idempotencyKey") is not None)

    def enqueue_many(self, jobs: list[dict]) -> list[dict]:
        """Queue up to 1,000 jobs (each a job body: payload and options) in one request and one
        transaction. An answer per job, in order: the job with "status" 202 (created) or 200
        (its idempotencyKey named it already), or {"status": 4xx, "error": ...} for that job
        alone. Retried after a 429 or 503 only when every job carries an idempotencyKey."""
        safe = all(job.get("idempotencyKey") is not None for job in jobs)
        return self._post(self.enqueue_url, {"jobs": jobs}, safe=safe)["jobs"]

    def status(self, job_id: str) -> dict:
        response = self._send("GET", self.status_url, True, params={"id": job_id}, timeout=self.timeout)
        if response.status_code >= 400:
            raise JobQueueHTTPError(response)
        return response.json()

    def stats(self, window_seconds: int | None = None) -> dict:
        """The queue's figures: the status function's metrics view (the token is required)."""
        params = {"view": "metrics", **({"window": str(window_seconds)} if window_seconds else {})}
        response = httpx.get(self.status_url, params=params, headers=self._headers(), timeout=self.timeout)
        if response.status_code >= 400:
            raise JobQueueHTTPError(response)
        return response.json()

    def cancel(self, job_id: str) -> dict:
        return self._post(self.cancel_url, {"generationId": job_id}, safe=True)  # a second cancel is harmless

    def rerun(self, job_id: str, **options) -> dict:
        """Queue a new job with a failed or cancelled job's payload."""
        return self._post(self.enqueue_url, {"rerunOf": job_id, **options})

    def list_jobs(self, **filters) -> dict:
        """One page of the token's tenant's jobs, newest first: {"jobs", "nextCursor"}.
        Filters by their API names: status ("queued,running"), kind, createdAfter,
        createdBefore, limit, cursor (the previous page's nextCursor)."""
        params = {"list": "1", **{name: value for name, value in filters.items() if value is not None}}
        response = httpx.get(self.status_url, params=params, headers=self._headers(), timeout=self.timeout)
        if response.status_code >= 400:
            raise JobQueueHTTPError(response)
        return response.json()

    def process(self, job_id: str | None = None, timeout: float = 3600) -> dict:
        """Stand in for Cloud Scheduler (no id) or Cloud Tasks (an id); blocks until the job ends."""
        if not self.process_url:
            raise ValueError("no process URL configured")
        return self._post(self.process_url, {"id": job_id} if job_id else {}, timeout=timeout)

    def follow(self, job_id: str, last_event_id: str | None = None, max_reconnects: int = 100) -> Iterator[StreamEvent]:
        """Every event of the job until `done`, reconnecting after drops without repeats."""
        reconnects = 0
        retry_seconds = 1.0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                with httpx.Client(timeout=httpx.Timeout(self.timeout, read=60)) as http:
                    with connect_sse(http, "GET", self.status_url, params={"id": job_id}, headers=headers) as source:
                        code = source.response.status_code
                        if code == 204:
                            return  # the job is over and nothing was missed
                        if code in RETRYABLE:  # the database or the instance is busy: come back later
                            retry_seconds = float(source.response.headers.get("Retry-After") or retry_seconds)
                            raise httpx.TransportError(f"HTTP {code}")
                        if code >= 400:
                            source.response.read()
                            raise JobQueueHTTPError(source.response)
                        for sse in source.iter_sse():
                            if sse.retry:
                                retry_seconds = sse.retry / 1000
                            if not sse.event or (sse.event == "message" and not sse.data):
                                continue
                            if sse.id:
                                last_event_id = sse.id
                            event = StreamEvent(sse.event, sse.id or None, json.loads(sse.data) if sse.data else {})
                            yield event
                            if event.event == "done":
                                return
                            reconnects = 0
            except httpx.TransportError:
                pass
            reconnects += 1
            if reconnects > max_reconnects:
                raise ConnectionError(f"gave up following job {job_id} after {max_reconnects} reconnects")
            time.sleep(min(retry_seconds * reconnects, 10))


def _retry_after(response: httpx.Response) -> float:
    """Retry-After in seconds (this API sends whole seconds); 1 when absent or unreadable."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0
