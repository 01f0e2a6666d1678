"""The campaign's calls, as a client and as Google's services would make them: enqueue and
cancel (retrying a 503 as Retry-After says), Cloud Tasks' extra deliveries (at-least-once:
some twice at once, some long after) and Cloud Scheduler's ticks (process and sweep)."""

from __future__ import annotations

import heapq
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx

from bench.campaign import workload
from bench.campaign.observe import Answers
from local.stack import DEV_TOKEN, Stack

AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}
EXTRA_DELIVERY_WORKERS = 8


class Deliveries:
    """The extra deliveries of a task that Cloud Tasks may make (at-least-once): each POSTs
    {"id"} to a process instance, on a bounded pool; an unreachable instance or a 503 is
    retried a second later, as Cloud Tasks would."""

    def __init__(self, instances, answers: Answers):
        self.instances, self.answers = instances, answers
        self._due: list[tuple[float, int, str]] = []
        self._count = 0
        self._lock = threading.Condition()
        self._pool = ThreadPoolExecutor(EXTRA_DELIVERY_WORKERS, thread_name_prefix="delivery")
        self._slots = threading.Semaphore(EXTRA_DELIVERY_WORKERS)
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deliveries", daemon=True)

    def start(self) -> Deliveries:
        self._thread.start()
        return self

    def add(self, job_id: str, at: float) -> None:
        with self._lock:
            self._count += 1
            heapq.heappush(self._due, (at, self._count, job_id))
            self._lock.notify()

    def _run(self) -> None:
        while not self.stopped.is_set():
            with self._lock:
                if not self._due or self._due[0][0] > time.monotonic():
                    self._lock.wait(0.1)
                    continue
                _, _, job_id = heapq.heappop(self._due)
            self._slots.acquire()
            self._pool.submit(self._deliver, job_id)

    def _deliver(self, job_id: str) -> None:
        try:
            response = httpx.post(self.instances.url(), json={"id": job_id}, timeout=600)
            self.answers.record("process(task)", response)
            if response.status_code >= 500 or response.status_code == 429:
                self.add(job_id, time.monotonic() + 1.0)
        except httpx.HTTPError:
            self.answers.unreachable("process(task)")
            self.add(job_id, time.monotonic() + 1.0)
        finally:
            self._slots.release()

    def stop(self) -> None:
        self.stopped.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


class Ticks(threading.Thread):
    """Cloud Scheduler's part: process (a few in flight) every second, sweep every two."""

    def __init__(self, stack: Stack, instances, answers: Answers):
        super().__init__(name="ticks", daemon=True)
        self.stack, self.instances, self.answers = stack, instances, answers
        self.slots = threading.Semaphore(4)
        self.stopped = threading.Event()

    def _call(self, name: str, release: bool) -> None:
        try:
            url = self.instances.url() if name == "process" else self.stack.url(name)
            self.answers.record(f"{name}(tick)", httpx.post(url, timeout=600))
        except httpx.HTTPError:
            self.answers.unreachable(f"{name}(tick)")
        finally:
            if release:
                self.slots.release()

    def run(self) -> None:
        tick = 0
        while not self.stopped.wait(1.0):
            tick += 1
            if self.slots.acquire(blocking=False):
                threading.Thread(target=self._call, args=("process", True), daemon=True).start()
            if tick % 2 == 0:
                threading.Thread(target=self._call, args=("sweep", False), daemon=True).start()


def enqueue(stack: Stack, job: workload.PlannedJob, answers: Answers) -> None:
    body = dict(job.body)
    if "runAt" in body:
        body["runAt"] = (datetime.now(UTC) + timedelta(seconds=body["runAt"])).isoformat()
    while True:  # the database may be down: a client retries a 503, as Retry-After says
        try:
            response = answers.record("enqueue", httpx.post(stack.url("enqueue"), json=body, headers=AUTH, timeout=30))
        except httpx.HTTPError:
            answers.unreachable("enqueue")
            time.sleep(0.5)
            continue
        if response.status_code == 202:
            break
        if response.status_code != 503:
            raise RuntimeError(f"enqueue refused a planned job: {response.status_code} {response.text[:300]}")
        time.sleep(float(response.headers.get("Retry-After", "1")))
    created = response.json()
    job.job_id, job.enqueued_at = created["id"], time.monotonic()
    job.extra["runAt"] = created["runAt"]


def cancel(stack: Stack, job: workload.PlannedJob, answers: Answers) -> None:
    for _ in range(20):
        try:
            response = answers.record(
                "cancel", httpx.post(stack.url("cancel"), json={"id": job.job_id}, headers=AUTH, timeout=30)
            )
        except httpx.HTTPError:
            answers.unreachable("cancel")
            time.sleep(0.5)
            continue
        if response.status_code != 503:
            job.extra["cancel"] = response.json().get("outcome", response.status_code)
            return
        time.sleep(1.0)


def due_in(job: workload.PlannedJob) -> float:
    run_at = datetime.fromisoformat(job.extra["runAt"].replace("Z", "+00:00"))
    return max(0.0, (run_at - datetime.now(UTC)).total_seconds())
