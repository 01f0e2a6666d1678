// The client against a running stack: `node --test clients/js/test/` with JOBQUEUE_ENQUEUE_URL,
// JOBQUEUE_STATUS_URL, JOBQUEUE_CANCEL_URL, JOBQUEUE_PROCESS_URL and JOBQUEUE_TOKEN set
// (tests/test_js_client.py starts a local stack and runs this). Without them, only the
// parser's tests run.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient, JobQueueError, readEvents } from "../jobqueue.js";

const env = process.env;
const stack = env.JOBQUEUE_STATUS_URL
  ? false
  : "no stack: set JOBQUEUE_*_URL (tests/test_js_client.py starts one and runs these)";
const options = {
  enqueueUrl: env.JOBQUEUE_ENQUEUE_URL,
  statusUrl: env.JOBQUEUE_STATUS_URL,
  cancelUrl: env.JOBQUEUE_CANCEL_URL,
  token: env.JOBQUEUE_TOKEN,
};
const client = createClient(options);
const TIMEOUT = 30_000;

/** Run this job now (what Cloud Tasks does); resolves when it ends. */
function run(id) {
  return fetch(env.JOBQUEUE_PROCESS_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id }),
  }).then((response) => response.json());
}

function demo(steps, stepSeconds = 0.05) {
  return client.enqueue({ kind: "demo", steps, stepSeconds });
}

function record() {
  const events = [];
  const states = [];
  return { events, states, onEvent: (e) => events.push(e), onState: (s) => states.push(s.state) };
}

const messages = (events) => events.filter((e) => e.type === "log").map((e) => e.data.message);
const steps = (n) => Array.from({ length: n }, (_, i) => `Step ${i + 1} of ${n} done`);

function streamOf(text) {
  const bytes = new TextEncoder().encode(text);
  return new ReadableStream({
    start(controller) {
      // Split mid-line, as the network may.
      controller.enqueue(bytes.slice(0, 7));
      controller.enqueue(bytes.slice(7));
      controller.close();
    },
  });
}

test("readEvents parses events, multi-line data, comments, CRLF and the retry hint", async () => {
  const text = 'retry: 1500\r\n\r\n: keep-alive\n\nid: 3\nevent: log\ndata: {"seq":3,\ndata: "m":"x"}\n\nevent: odd\ndata: plain\n\n';
  const events = [];
  for await (const event of readEvents(streamOf(text))) events.push(event);
  assert.deepEqual(events, [
    { type: "retry", id: null, data: null, retry: 1500 },
    { type: "log", id: "3", data: { seq: 3, m: "x" } },
    { type: "odd", id: null, data: "plain" },
  ]);
});

test("enqueue refuses a bad newsletter request, naming each field", { skip: stack, timeout: TIMEOUT }, async () => {
  const body = { dateRange: { from: "2025-02-30", to: "2025-01-01" }, selectedSources: [], outputFormat: "pdf" };
  const error = await client.enqueue(body).catch((e) => e);
  assert.ok(error instanceof JobQueueError);
  assert.equal(error.status, 400);
  assert.equal(error.retryable, false);
  assert.deepEqual(error.details.map((d) => d.field).sort(), ["dateRange.from", "outputFormat", "selectedSources"]);
});

test("enqueue without the token is a 401", { skip: stack, timeout: TIMEOUT }, async () => {
  const error = await createClient({ ...options, token: null }).enqueue({ kind: "demo" }).catch((e) => e);
  assert.equal(error.status, 401);
  assert.equal(error.code, "unauthorized");
});

test("follow streams a job to its end, each event once and in order", { skip: stack, timeout: TIMEOUT }, async () => {
  const job = await demo(4);
  assert.equal(job.jobStatus, "queued");
  const seen = record();
  let started = null;
  const final = await client.follow(job.id, {
    ...seen,
    onEvent: (event) => {
      seen.onEvent(event);
      if (event.type === "snapshot" && !started) started = run(job.id);
    },
  });
  await started;
  assert.equal(final.jobStatus, "completed");
  assert.equal(seen.events[0].type, "snapshot");
  assert.equal(seen.events.at(-1).type, "done");
  assert.deepEqual(messages(seen.events), steps(4));
  const ids = seen.events.filter((e) => e.id && e.type !== "done").map((e) => Number(e.id));
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual([seen.states[0], seen.states[1], seen.states.at(-1)], ["connecting", "connected", "finished"]);
});

test("follow resumes after Last-Event-ID, and a 204 gives the final state", { skip: stack, timeout: TIMEOUT }, async () => {
  const job = await demo(3);
  await run(job.id);
  const whole = record();
  await client.follow(job.id, whole);
  const last = Number(whole.events.at(-1).id);
  const firstLog = Number(whole.events.find((e) => e.type === "log").id);

  const resumed = record();
  await client.follow(job.id, { ...resumed, lastEventId: firstLog });
  assert.deepEqual(messages(resumed.events), steps(3).slice(1));
  assert.ok(!resumed.events.some((e) => e.type === "snapshot"), "a resumed stream sends no snapshot");

  // Nothing missed: the function answers 204, and the client fetches the job instead.
  const finished = record();
  const final = await client.follow(job.id, { ...finished, lastEventId: last });
  assert.deepEqual(finished.events.map((e) => e.type), ["done"]);
  assert.equal(final.jobStatus, "completed");
  assert.deepEqual(final.result, finished.events[0].data.result);
  assert.deepEqual(finished.states, ["connecting", "finished"]);
});

test("follow reconnects after a dropped stream and loses or repeats nothing", { skip: stack, timeout: TIMEOUT }, async () => {
  const job = await demo(6, 0.15);
  let drops = 0;
  const resumedFrom = [];
  // A fetch whose first stream fails (as a network drop) right after its first log line.
  const flaky = async (url, init) => {
    const response = await fetch(url, init);
    if (!url.includes("stream=1")) return response;
    resumedFrom.push(init.headers["Last-Event-ID"] || null);
    if (drops) return response;
    drops += 1;
    const reader = response.body.getReader();
    const body = new ReadableStream({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        controller.enqueue(value);
        if (new TextDecoder().decode(value).includes("event: log")) {
          reader.cancel();
          controller.error(new TypeError("network connection lost"));
        }
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  const seen = record();
  let started = null;
  const final = await createClient({ ...options, fetch: flaky, retryMs: 50 }).follow(job.id, {
    ...seen,
    onEvent: (event) => {
      seen.onEvent(event);
      if (event.type === "snapshot" && !started) started = run(job.id);
    },
  });
  await started;
  assert.equal(final.jobStatus, "completed");
  assert.deepEqual(messages(seen.events), steps(6));
  assert.ok(seen.states.includes("reconnecting"));
  assert.equal(resumedFrom[0], null);
  assert.match(resumedFrom[1], /^\d+$/, "the reconnect names the last event it saw");
});

test("follow polls the JSON status when streams keep failing", { skip: stack, timeout: TIMEOUT }, async () => {
  const job = await demo(3, 0.1);
  const noStreams = (url, init) =>
    url.includes("stream=1") ? Promise.reject(new TypeError("blocked")) : fetch(url, init);
  const polling = createClient({ ...options, fetch: noStreams, retryMs: 20, pollAfterFailures: 2, pollIntervalMs: 100 });
  const seen = record();
  const following = polling.follow(job.id, seen);
  await run(job.id);
  const final = await following;
  assert.equal(final.jobStatus, "completed");
  assert.deepEqual(messages(seen.events), steps(3));
  assert.ok(seen.states.includes("polling"));
  assert.equal(seen.events.at(-1).type, "done");
});

test("follow stops when its signal aborts", { skip: stack, timeout: TIMEOUT }, async () => {
  const job = await demo(3);
  const controller = new AbortController();
  const outcome = await client.follow(job.id, {
    signal: controller.signal,
    onState: ({ state }) => state === "connected" && controller.abort(),
  });
  assert.equal(outcome, null);
  await client.cancel(job.id);
});

test("cancel: a queued job at once; without the token a 401", { skip: stack, timeout: TIMEOUT }, async () => {
  const job = await demo(3);
  const refused = await createClient({ ...options, token: null }).cancel(job.id).catch((e) => e);
  assert.equal(refused.status, 401);
  const cancelled = await client.cancel(job.id);
  assert.equal(cancelled.outcome, "cancelled");
  assert.equal(cancelled.jobStatus, "cancelled");
  assert.equal((await client.cancel(job.id)).outcome, "already_cancelled");
});

test("an unknown job is a final 404, for status and follow alike", { skip: stack, timeout: TIMEOUT }, async () => {
  const id = "00000000-0000-4000-8000-000000000000";
  const error = await client.status(id).catch((e) => e);
  assert.equal(error.status, 404);
  assert.equal(error.retryable, false);
  await assert.rejects(client.follow(id), (e) => e instanceof JobQueueError && e.status === 404);
});

test("list pages the caller's jobs newest first; another tenant sees none of them", { skip: stack, timeout: TIMEOUT }, async () => {
  const older = await demo(1);
  const newer = await demo(1);
  const first = await client.list({ kind: "demo", status: ["queued"], limit: 1 });
  assert.deepEqual(first.jobs.map((j) => j.id), [newer.id]);
  assert.equal(typeof first.nextCursor, "string");
  const second = await client.list({ kind: "demo", status: ["queued"], limit: 1, cursor: first.nextCursor });
  assert.deepEqual(second.jobs.map((j) => j.id), [older.id]);

  const other = createClient({ ...options, token: env.JOBQUEUE_OTHER_TOKEN });
  const theirs = await other.list({ limit: 100 });
  assert.ok(!theirs.jobs.some((j) => j.id === older.id || j.id === newer.id));
  const refused = await other.cancel(newer.id).catch((e) => e);
  assert.equal(refused.status, 404, "another tenant's job is a 404, never a 403");
  const anonymous = await createClient({ ...options, token: null }).list().catch((e) => e);
  assert.equal(anonymous.status, 401);
  await client.cancel(older.id);
  await client.cancel(newer.id);
});

test("watchList: a snapshot, then each change, and a job leaving the filter is seen leaving", { skip: stack, timeout: TIMEOUT }, async () => {
  // The job runs until it is cancelled, and is cancelled once the list has shown it running: a
  // change is sent as the job stands when the stream reads it, so a job that ran for 0.1 s could
  // be read only once it had ended (a loaded run never saw it running).
  const job = await demo(400, 0.1);
  const controller = new AbortController();
  const seen = [];
  let started = null;
  let cancelled = null;
  const states = [];
  await client.watchList({ status: "queued,running", kind: "demo" }, {
    signal: controller.signal,
    onState: ({ state }) => states.push(state),
    onEvent: (event) => {
      if (event.type === "snapshot") {
        seen.push(["snapshot", event.data.jobs.some((j) => j.id === job.id)]);
        if (!started) started = run(job.id);
      } else if (event.type === "job" && event.data.id === job.id) {
        seen.push([event.data.jobStatus, event.data.matches]);
        if (event.data.jobStatus === "running" && !cancelled) cancelled = client.cancel(job.id);
        if (!event.data.matches) controller.abort();
      }
    },
  });
  await Promise.all([started, cancelled]);
  assert.deepEqual(seen[0], ["snapshot", true]);
  assert.deepEqual(seen.at(-1), ["cancelled", false]);
  assert.ok(seen.some(([status, matches]) => status === "running" && matches === true));
  assert.deepEqual(states.slice(0, 2), ["connecting", "connected"]);
});

test("watchList polls the list when its stream keeps failing", { skip: stack, timeout: TIMEOUT }, async () => {
  const job = await demo(1);
  const noStreams = (url, init) =>
    url.includes("stream=1") ? Promise.reject(new TypeError("blocked")) : fetch(url, init);
  const polling = createClient({ ...options, fetch: noStreams, retryMs: 20, pollAfterFailures: 2, pollIntervalMs: 50 });
  const controller = new AbortController();
  const snapshots = [];
  const states = [];
  await polling.watchList({ status: "queued", kind: "demo" }, {
    signal: controller.signal,
    onState: ({ state }) => states.push(state),
    onEvent: (event) => {
      snapshots.push(event.data.jobs.map((j) => j.id));
      if (snapshots.length === 2) controller.abort();
    },
  });
  assert.ok(states.includes("polling"));
  assert.ok(snapshots.every((ids) => ids.includes(job.id)));
  await client.cancel(job.id);
});

test("enqueueMany: an answer per job in order, and a retry with keys creates nothing twice", { skip: stack, timeout: TIMEOUT }, async () => {
  const key = `bulk-${Date.now()}`;
  const jobs = [{ kind: "demo", steps: 1, idempotencyKey: `${key}-a` }, { kind: "demo", steps: "many" }, { kind: "demo", steps: 2, idempotencyKey: `${key}-b` }];
  const first = await client.enqueueMany(jobs);
  assert.deepEqual(first.map((answer) => answer.status), [202, 400, 202]);
  assert.equal(first[1].error.details[0].field, "steps");
  const again = await client.enqueueMany([jobs[0], jobs[2]]);
  assert.deepEqual(again.map((answer) => answer.status), [200, 200]);
  assert.deepEqual(again.map((answer) => answer.id), [first[0].id, first[2].id]);
});

/** The real fetch, but the first request to the enqueue URL is answered 429 (Retry-After: 1) without being sent. */
function refusingOnce() {
  const calls = [];
  const fetcher = async (url, init) => {
    calls.push(String(url));
    if (calls.length === 1) return new Response('{"error": {"code": "rate_limited", "message": "later"}}', { status: 429, headers: { "Retry-After": "1" } });
    return fetch(url, init);
  };
  return { calls, fetcher };
}

test("a 429 is retried after Retry-After only for a request safe to repeat", { skip: stack, timeout: TIMEOUT }, async () => {
  const keyed = refusingOnce();
  const job = await createClient({ ...options, fetch: keyed.fetcher }).enqueue({ kind: "demo", steps: 1, idempotencyKey: `retry-${Date.now()}` });
  assert.equal(job.jobStatus, "queued");
  assert.equal(keyed.calls.length, 2);
  const keyless = refusingOnce();
  const refused = await createClient({ ...options, fetch: keyless.fetcher }).enqueue({ kind: "demo", steps: 1 }).catch((e) => e);
  assert.equal(refused.status, 429);
  assert.equal(refused.retryAfterMs, 1000);
  assert.equal(keyless.calls.length, 1); // sent twice, it could have queued the job twice
  const status = refusingOnce();
  assert.equal((await createClient({ ...options, fetch: status.fetcher }).status(job.id)).id, job.id);
  assert.equal(status.calls.length, 2);
});
