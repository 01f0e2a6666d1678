"""A small Cloud Tasks emulator, bound to loopback, that dispatches tasks over HTTP. It speaks
gRPC, the transport the real google-cloud-tasks client uses by default and the one our
dispatcher uses, at `endpoint` (CLOUD_TASKS_EMULATOR_HOST), and the JSON REST API at
`rest_endpoint` (for curl, and for tests that send what the typed client cannot, such as a
schedule time that is not a time). Both reach the same tasks; gRPC answers CreateTask only,
the one call the dispatcher makes.

What it does as Cloud Tasks does: task names are unique (a second create with the same
name is 409 ALREADY_EXISTS), tasks wait until their schedule time, an HTTP target gets the
task's method, headers and body plus the X-CloudTasks-* headers and, with an OIDC token
configured, an `Authorization: Bearer` token naming the service account and audience
(unsigned: nothing local can verify Google's signature), a non-2xx answer is retried with
backoff, and at most `max_concurrent_dispatches` run at once. A schedule time more than
30 days ahead is refused (400), as Cloud Tasks does. Not emulated: queue management, rate
limits, IAM.

Targets go through the same guard as webhooks (shared.core.netguard): https to a public
address, connected to the address that was checked, no redirect followed; loopback (and
plain http to it) only with `allow_loopback` (`--allow-loopback`; the local stack sets it,
since the functions it calls listen there).

    python -m local.tasks_emulator --port 8123 --rest-port 8125
"""

from __future__ import annotations

import argparse
import base64
import errno
import heapq
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.core import netguard

_TASKS = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks(?:/([^/?]+))?$")
_METHODS = {1: "POST", 2: "GET", 3: "HEAD", 4: "PUT", 5: "DELETE", 6: "PATCH", 7: "OPTIONS"}
MAX_SCHEDULE_AHEAD_SECONDS = 30 * 24 * 3600  # Cloud Tasks refuses a schedule time further ahead
# The dispatcher sleeps at most this long at a time, whatever the next due time: a wait of
# years overflows the lock's timeout (and killed this thread once).
MAX_WAIT_SECONDS = 60.0
IDLE_CONNECTION_SECONDS = 60.0  # a client's open connection is closed after this long unused


def _timestamp(value: str | None) -> float:
    if not value:
        return time.time()
    # A time in the past means now; before 1970 would not even print.
    return max(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), 0.0)


def _seconds(duration: str | None, default: float) -> float:
    return float(duration.rstrip("s")) if duration else default


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def fake_oidc_token(email: str, audience: str) -> str:
    """Shaped like a JWT (header.claims.signature) so that receivers can read the claims."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return ".".join((part({"alg": "none", "typ": "JWT"}), part({"email": email, "aud": audience, "iss": "local"}), ""))


@dataclass
class Dispatch:
    """One HTTP delivery of a task: what the receiver saw, for tests to inspect."""

    status: int | None
    headers: dict
    at: float
    refused: str | None = None  # the guard's reason, when nothing was sent
    sent_at: float = 0.0  # when the delivery began (bench/tasks_path.py: the emulator's own share ends here)


@dataclass(order=True)
class Task:
    due: float
    name: str = field(compare=False)
    http_request: dict = field(compare=False)
    deadline: float = field(compare=False, default=600.0)
    created: float = field(compare=False, default_factory=time.time)
    dispatches: list[Dispatch] = field(compare=False, default_factory=list)
    done: bool = field(compare=False, default=False)
    # Set once a delivery is recorded: a benchmark waits on it instead of polling a function
    # (a poll would take CPU from the path it times).
    dispatched: threading.Event = field(compare=False, default_factory=threading.Event)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "httpRequest": self.http_request,
            "scheduleTime": _iso(self.due),
            "createTime": _iso(self.created),
            "dispatchDeadline": f"{self.deadline:g}s",
            "dispatchCount": len(self.dispatches),
            "responseCount": sum(1 for d in self.dispatches if d.status is not None),
        }


class TasksEmulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        max_attempts: int = 5,
        max_concurrent: int = 10,
        allow_loopback: bool = False,
        rest_port: int = 0,
    ):
        self.tasks: dict[str, Task] = {}
        self.max_attempts = max_attempts
        self.unavailable_creates = 0  # gRPC CreateTask calls to answer UNAVAILABLE (tests)
        self.policy = netguard.CALLBACKS_IN_DEVELOPMENT if allow_loopback else netguard.CALLBACKS
        self._due: list[Task] = []
        self._lock = threading.Condition()
        self._slots = threading.Semaphore(max_concurrent)
        self._stopped = threading.Event()
        self.host = host
        self.grpc, self.port = _grpc_server(self, host, port)
        self.server = ThreadingHTTPServer((host, rest_port), self._handler())
        self.server.daemon_threads = True

    @property
    def endpoint(self) -> str:
        """Where the gRPC API listens: CLOUD_TASKS_EMULATOR_HOST."""
        return f"{self.host}:{self.port}"

    @property
    def rest_endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> TasksEmulator:
        self.grpc.start()
        threading.Thread(target=self.server.serve_forever, name="tasks-emulator-http", daemon=True).start()
        threading.Thread(target=self._dispatch_forever, name="tasks-emulator-dispatch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            self._lock.notify_all()
        self.grpc.stop(grace=None)
        self.server.shutdown()
        self.server.server_close()

    # -- the API -------------------------------------------------------------------------

    def create(self, queue: str, body: dict) -> tuple[int, dict]:
        spec = body.get("task") or {}
        name = spec.get("name") or f"{queue}/tasks/{time.time_ns()}"
        if not name.startswith(queue + "/tasks/"):
            return 400, _error(400, "INVALID_ARGUMENT", "The task name must be in the queue it is created in")
        if "httpRequest" not in spec:
            return 400, _error(400, "INVALID_ARGUMENT", "Only HTTP targets are emulated")
        try:
            due = _timestamp(spec.get("scheduleTime"))
        except (TypeError, ValueError, OverflowError):
            return 400, _error(400, "INVALID_ARGUMENT", "scheduleTime is not a valid time")
        if due > time.time() + MAX_SCHEDULE_AHEAD_SECONDS:
            return 400, _error(400, "INVALID_ARGUMENT", "Schedule time must be no more than 720h in the future")
        with self._lock:
            if name in self.tasks:
                return 409, _error(409, "ALREADY_EXISTS", "Requested entity already exists")
            task = Task(
                due=due,
                name=name,
                http_request=spec["httpRequest"],
                deadline=_seconds(spec.get("dispatchDeadline"), 600.0),
            )
            self.tasks[name] = task
            heapq.heappush(self._due, task)
            self._lock.notify_all()
        return 200, task.to_json()

    def _handler(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            # Connections stay open between calls, as the real API's do: a client that had to
            # connect again for each task would pay a cost here that it does not pay deployed.
            protocol_version = "HTTP/1.1"
            timeout = IDLE_CONNECTION_SECONDS
            # On an open connection Nagle's algorithm holds the answer's body back until the
            # client acknowledges its head, which the client delays: 40 ms an answer.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self):
                return _TASKS.match(self.path.split("?")[0])

            def do_POST(self):
                # The body is read first, whatever the answer: on an open connection, one left
                # unread would be taken for the next request.
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = self._route()
                if not match or match.group(2):
                    return self._answer(404, _error(404, "NOT_FOUND", "Unknown method"))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self._answer(400, _error(400, "INVALID_ARGUMENT", "Body is not JSON"))
                self._answer(*emulator.create(match.group(1), body))

            def do_GET(self):
                match = self._route()
                if not match:
                    return self._answer(404, _error(404, "NOT_FOUND", "Unknown method"))
                with emulator._lock:
                    if match.group(2):
                        task = emulator.tasks.get(f"{match.group(1)}/tasks/{match.group(2)}")
                        if task is None:
                            return self._answer(404, _error(404, "NOT_FOUND", "No such task"))
                        return self._answer(200, task.to_json())
                    listed = [t.to_json() for t in emulator.tasks.values() if t.name.startswith(match.group(1) + "/")]
                self._answer(200, {"tasks": listed})

        return Handler

    # -- dispatching ---------------------------------------------------------------------

    def _dispatch_forever(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                while not self._stopped.is_set() and (not self._due or self._due[0].due > time.time()):
                    wait = self._due[0].due - time.time() if self._due else MAX_WAIT_SECONDS
                    self._lock.wait(timeout=min(wait, MAX_WAIT_SECONDS))
                if self._stopped.is_set():
                    return
                task = heapq.heappop(self._due)
            self._slots.acquire()
            threading.Thread(target=self._deliver, args=(task,), daemon=True).start()

    def _deliver(self, task: Task) -> None:
        try:
            status = self._send(task)
        finally:
            self._slots.release()
        with self._lock:
            if (status is not None and 200 <= status < 300) or task.dispatches[-1].refused:
                task.done = True
            elif len(task.dispatches) < self.max_attempts:
                task.due = time.time() + min(0.2 * 2 ** len(task.dispatches), 5)
                heapq.heappush(self._due, task)
                self._lock.notify_all()
            else:
                task.done = True

    def _send(self, task: Task) -> int | None:
        spec = task.http_request
        headers = dict(spec.get("headers") or {})
        queue, _, short = task.name.partition("/tasks/")
        headers.update(
            {
                "X-CloudTasks-QueueName": queue.rsplit("/", 1)[-1],
                "X-CloudTasks-TaskName": short,
                "X-CloudTasks-TaskRetryCount": str(len(task.dispatches)),
                "X-CloudTasks-TaskExecutionCount": str(sum(1 for d in task.dispatches if d.status is not None)),
            }
        )
        oidc = spec.get("oidcToken")
        if oidc:
            audience = oidc.get("audience") or spec["url"]
            headers["Authorization"] = "Bearer " + fake_oidc_token(oidc.get("serviceAccountEmail", ""), audience)
        body = base64.b64decode(spec["body"]) if spec.get("body") else None
        method = spec.get("httpMethod", "POST")
        method = _METHODS.get(method, "POST") if isinstance(method, int) else method
        status, refused = None, None
        sent_at = time.time()
        try:
            status = netguard.request_status(method, spec["url"], body, headers, self.policy, task.deadline)
        except netguard.Refused as exc:
            refused = str(exc)  # never sent: retrying would not change the answer
        except OSError:
            status = None
        task.dispatches.append(Dispatch(status, headers, time.time(), refused, sent_at))
        task.dispatched.set()
        return status


# -- the gRPC API ----------------------------------------------------------------------------

GRPC_SERVICE = "google.cloud.tasks.v2.CloudTasks"
MAX_GRPC_THREADS = 16  # calls served at once (a bulk enqueue pushes 16 at a time)


def _grpc_server(emulator: TasksEmulator, host: str, port: int):
    """A gRPC server for CreateTask, bound (not started): (server, port). gRPC and the
    messages come with google-cloud-tasks, a runtime dependency."""
    # The process that runs the emulator starts the functions (fork, then exec at once), and
    # gRPC's fork handlers, of no use to such a child, log "Other threads are currently
    # calling into gRPC, skipping fork() handlers" on each start. Read at gRPC's import.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    import grpc  # noqa: PLC0415
    from google.cloud import tasks_v2  # noqa: PLC0415

    request_type, task_type = tasks_v2.CreateTaskRequest.pb(), tasks_v2.Task.pb()
    codes = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.ALREADY_EXISTS}

    def create_task(request, context):
        with emulator._lock:
            unavailable = emulator.unavailable_creates > 0
            emulator.unavailable_creates -= unavailable
        if unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable (emulated)")
        status, answer = emulator.create(request.parent, {"task": _rest_shape(request.task)})
        if status != 200:
            context.abort(codes[status], answer["error"]["message"])
        task = emulator.tasks[answer["name"]]
        created = task_type(name=task.name)
        created.schedule_time.FromNanoseconds(int(task.due * 1e9))
        created.create_time.FromNanoseconds(int(task.created * 1e9))
        created.dispatch_deadline.FromNanoseconds(int(task.deadline * 1e9))
        return created

    handlers = grpc.method_handlers_generic_handler(
        GRPC_SERVICE,
        {
            "CreateTask": grpc.unary_unary_rpc_method_handler(
                create_task,
                request_deserializer=request_type.FromString,
                response_serializer=task_type.SerializeToString,
            )
        },
    )
    # gRPC binds with SO_REUSEPORT by default: a second emulator would share the port silently.
    server = grpc.server(ThreadPoolExecutor(MAX_GRPC_THREADS), handlers=(handlers,), options=[("grpc.so_reuseport", 0)])
    try:
        return server, server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # gRPC's way of saying what a socket says with EADDRINUSE
        raise OSError(errno.EADDRINUSE, f"The Cloud Tasks emulator cannot listen on {host}:{port}: {exc}") from exc


def _rest_shape(task) -> dict:
    """A Task message as the REST API spells it (what `create` reads)."""
    spec: dict = {"name": task.name}
    if task.HasField("http_request"):
        http = task.http_request
        method = _METHODS.get(http.http_method, "POST")  # unspecified (0) is POST, as in Cloud Tasks
        spec["httpRequest"] = {"url": http.url, "httpMethod": method, "headers": dict(http.headers)}
        if http.body:
            spec["httpRequest"]["body"] = base64.b64encode(http.body).decode()
        if http.HasField("oidc_token"):
            spec["httpRequest"]["oidcToken"] = {
                "serviceAccountEmail": http.oidc_token.service_account_email,
                "audience": http.oidc_token.audience,
            }
    if task.HasField("schedule_time"):
        spec["scheduleTime"] = task.schedule_time.ToJsonString()
    if task.HasField("dispatch_deadline"):
        spec["dispatchDeadline"] = task.dispatch_deadline.ToJsonString()
    return spec


def _error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8123, help="the gRPC API (CLOUD_TASKS_EMULATOR_HOST)")
    parser.add_argument("--rest-port", type=int, default=8125, help="the JSON REST API")
    parser.add_argument("--allow-loopback", action="store_true", help="dispatch to this machine too (development)")
    args = parser.parse_args()
    emulator = TasksEmulator(port=args.port, rest_port=args.rest_port, allow_loopback=args.allow_loopback).start()
    print(f"Cloud Tasks emulator: gRPC on {emulator.endpoint}, REST on http://{emulator.rest_endpoint}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
