// jobqueue: a dependency-free client for the job queue's functions, for browsers and Node 18+.
//
//   const client = createClient({ enqueueUrl, statusUrl, cancelUrl, token });
//   const job = await client.enqueue({ kind: "demo", steps: 3 });
//   const final = await client.follow(job.id, { onEvent: (e) => console.log(e.type, e.data) });
//
// Streams are read with fetch, not EventSource: fetch can send the Authorization header
// (the job list needs it; EventSource cannot send headers) and sees the status code (a 204
// says a finished job has nothing more to send: the client then fetches its final state).

const TERMINAL = ["completed", "failed", "cancelled"];
// Answers worth another try later; any other error status is final (400, 401, 404 ...).
const RETRYABLE = [408, 425, 429, 500, 502, 503, 504];
// The answers that say "the same request later": retried for requests safe to repeat.
const RETRY_AFTER = [429, 503];

/** An error answer of a function: `{"error": {"code", "message", "details"}}`, or a network failure (status 0). */
export class JobQueueError extends Error {
  constructor(status, body, fallback) {
    const error = (body && body.error) || {};
    super(error.message || fallback || `HTTP ${status}`);
    this.name = "JobQueueError";
    this.status = status;
    this.code = error.code || (status ? "http_" + status : "network");
    this.details = Array.isArray(error.details) ? error.details : [];
    this.body = body;
    this.retryAfterMs = null;
  }

  /** True when trying again later may succeed (a network failure, 429, 503 ...). */
  get retryable() {
    return this.status === 0 || RETRYABLE.includes(this.status);
  }
}

export function createClient(options) {
  return new JobQueueClient(options);
}

export class JobQueueClient {
  constructor(options = {}) {
    this.enqueueUrl = options.enqueueUrl || null;
    this.statusUrl = options.statusUrl || null;
    this.cancelUrl = options.cancelUrl || null;
    this.token = options.token || null;
    this.fetch = options.fetch || globalThis.fetch.bind(globalThis);
    this.retryMs = options.retryMs ?? 1000; // first reconnect delay; the stream's retry: hint replaces it
    this.maxRetryMs = options.maxRetryMs ?? 30000;
    this.pollAfterFailures = options.pollAfterFailures ?? 3; // failed reconnects in a row before polling
    this.pollIntervalMs = options.pollIntervalMs ?? 2000;
    // A 429 or 503 to a request safe to repeat (status, cancel, an enqueue whose every job has
    // an idempotencyKey) is sent again after its Retry-After, at most this many times.
    this.maxRetries = options.maxRetries ?? 3;
  }

  // -- plain requests --------------------------------------------------------------------

  /** Queue a job: the body is the payload plus the queue options (kind, priority, runAt, maxAttempts, idempotencyKey, callbackUrl). */
  async enqueue(body, { signal } = {}) {
    return this._json(
      need(this.enqueueUrl, "enqueueUrl"),
      { method: "POST", headers: this._headers({ "Content-Type": "application/json" }), body: JSON.stringify(body), signal },
      { safe: body?.idempotencyKey != null },
    );
  }

  /**
   * Queue up to 1,000 jobs in one request and one transaction. Resolves with an answer per
   * job, in order: the job with `status` 202 (created) or 200 (its idempotencyKey named it
   * already), or `{status, error}` for that job alone.
   */
  async enqueueMany(jobs, { signal } = {}) {
    const answer = await this._json(
      need(this.enqueueUrl, "enqueueUrl"),
      { method: "POST", headers: this._headers({ "Content-Type": "application/json" }), body: JSON.stringify({ jobs }), signal },
      { safe: jobs.every((job) => job?.idempotencyKey != null) },
    );
    return answer.jobs;
  }

  /** Queue a failed or cancelled job again: a new job with its kind and payload (`rerunOf` names the original). */
  async rerun(id, options = {}, { signal } = {}) {
    return this.enqueue({ ...options, rerunOf: id }, { signal });
  }

  /** The job and its log lines. */
  async status(id, { signal } = {}) {
    const url = this._statusUrl({ id });
    return this._json(url, { headers: { Accept: "application/json" }, signal, cache: "no-store" }, { safe: true });
  }

  /** Cancel a job: `outcome` is cancelled, cancel_requested or already_cancelled. */
  async cancel(id, { signal } = {}) {
    return this._json(need(this.cancelUrl, "cancelUrl"), {
      method: "POST",
      headers: this._headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ generationId: id }),
      signal,
    }, { safe: true }); // a second cancel is harmless
  }

  /** One page of the caller's jobs, newest first: `{jobs, nextCursor}`; pass nextCursor back for the next page. */
  async list(query = {}, { signal } = {}) {
    const url = this._statusUrl({ list: "1", ...listParams(query) });
    return this._json(url, { headers: this._headers({ Accept: "application/json" }), signal, cache: "no-store" });
  }

  // -- streams ---------------------------------------------------------------------------

  /**
   * Follow a job to its end. Calls onEvent({type, id, data}) for every event (snapshot,
   * status, progress, log, preview ..., done) and onState({state, attempt, delayMs}) when
   * the connection changes. Reconnects with Last-Event-ID, so nothing is lost or repeated;
   * on a 204 (a finished job with nothing more to send) it fetches the final state and
   * sends it as `done`. After `pollAfterFailures` failed reconnects in a row, or where fetch
   * cannot stream, it polls the JSON status instead (state "polling"), trying the stream again
   * with backoff, and goes back to it ("connected") once it answers. Resolves with the
   * finished job, or null when `signal` aborts; rejects on a final error (404 ...).
   */
  async follow(id, { onEvent = () => {}, onState = () => {}, signal, lastEventId = 0 } = {}) {
    const cursor = { last: Number(lastEventId) || 0 };
    const emit = (event) => {
      if (event.id != null && event.type !== "done") {
        if (Number(event.id) <= cursor.last) return; // already delivered: never repeat one
        cursor.last = Number(event.id);
      }
      onEvent(event);
    };
    const connect = () => {
      const headers = { Accept: "text/event-stream" };
      if (cursor.last) headers["Last-Event-ID"] = String(cursor.last);
      return this.fetch(this._statusUrl({ id, stream: "1" }), { headers, signal, cache: "no-store" });
    };
    const finish = async () => {
      const job = await this.status(id, { signal });
      emitLogs(job, emit);
      emit({ type: "done", id: null, data: job });
      return job;
    };
    const poll = async () => {
      const job = await this.status(id, { signal });
      emitLogs(job, emit);
      // The stream resumes after what this check showed: nothing older is sent again.
      if (Number(job.lastEventSeq) > cursor.last) cursor.last = Number(job.lastEventSeq);
      if (!TERMINAL.includes(job.jobStatus)) {
        emit({ type: "snapshot", id: null, data: job });
        return undefined;
      }
      emit({ type: "done", id: null, data: job });
      return job;
    };
    return this._stream({ connect, onEvent: emit, onState, signal, poll, onNoContent: finish, doneType: "done" });
  }

  /**
   * Watch the caller's jobs: onEvent({type: "snapshot", data: {jobs}}) on every (re)connect,
   * then {type: "job", data: job} for each change. The list has no single sequence to resume
   * from, so a reconnect starts with a fresh snapshot. Falls back to polling `list` like
   * follow. Runs until `signal` aborts (then resolves); rejects on a final error (401 ...).
   */
  async watchList(query = {}, { onEvent = () => {}, onState = () => {}, signal } = {}) {
    const connect = () =>
      this.fetch(this._statusUrl({ list: "1", stream: "1", ...listParams(query) }), {
        headers: this._headers({ Accept: "text/event-stream" }),
        signal,
        cache: "no-store",
      });
    const poll = async () => {
      const page = await this.list(query, { signal });
      onEvent({ type: "snapshot", id: null, data: { jobs: page.jobs } });
      return undefined; // a list never finishes
    };
    await this._stream({ connect, onEvent, onState, signal, poll, onNoContent: null, doneType: null });
    return null;
  }

  // -- the machinery ---------------------------------------------------------------------

  async _stream({ connect, onEvent, onState, signal, poll, onNoContent, doneType }) {
    let failures = 0;
    let retryMs = this.retryMs;
    if (!canStream()) {
      let result;
      while (result === undefined) result = await this._poll(signal, onState, poll, Infinity);
      return result;
    }
    while (!signal?.aborted) {
      const polling = failures >= this.pollAfterFailures; // a stream try between checks: still "polling"
      if (!polling) onState({ state: failures ? "reconnecting" : "connecting", attempt: failures, delayMs: 0 });
      try {
        const response = await connect();
        if (response.status === 204 && onNoContent) {
          const job = await onNoContent();
          onState({ state: "finished", attempt: 0, delayMs: 0 });
          return job;
        }
        if (!response.ok || !response.body) throw await errorOf(response);
        onState({ state: "connected", attempt: 0, delayMs: 0 });
        failures = 0;
        for await (const event of readEvents(response.body, signal)) {
          if (event.retry != null) {
            retryMs = event.retry;
            continue;
          }
          onEvent(event);
          if (doneType && event.type === doneType) {
            onState({ state: "finished", attempt: 0, delayMs: 0 });
            return event.data;
          }
        }
        // The server closed the stream (its time limit): reconnect after its retry hint.
        await sleep(retryMs, signal);
      } catch (error) {
        if (signal?.aborted) break;
        const failure = error instanceof JobQueueError ? error : new JobQueueError(0, null, String(error?.message || error));
        if (!failure.retryable) throw failure;
        failures += 1;
        if (failures >= this.pollAfterFailures) {
          // Live updates keep failing: check the JSON instead until the stream is worth another
          // try, after a pause that grows with each failed try (or at once, when a check succeeds
          // after failing: the function is back).
          const streamRetryMs = backoff(retryMs, failures - this.pollAfterFailures + 1, this.maxRetryMs);
          const result = await this._poll(signal, onState, poll, streamRetryMs);
          if (result !== undefined) return result;
          continue;
        }
        const delayMs = Math.max(failure.retryAfterMs ?? 0, backoff(retryMs, failures, this.maxRetryMs));
        onState({ state: "reconnecting", attempt: failures, delayMs, error: failure });
        await sleep(delayMs, signal);
      }
    }
    return null;
  }

  /**
   * Call `once` every pollIntervalMs until it returns a value (then that value), `forMs` has
   * passed or a check succeeds after one failed (then undefined: time to try the stream
   * again), or `signal` aborts (then null). A failed check is reported as state "polling"
   * with its `error`.
   */
  async _poll(signal, onState, once, forMs) {
    const until = Date.now() + forMs;
    let failing = false;
    while (!signal?.aborted) {
      try {
        const value = await once();
        if (value !== undefined) {
          onState({ state: "finished", attempt: 0, delayMs: 0 });
          return value;
        }
        onState({ state: "polling", attempt: 0, delayMs: this.pollIntervalMs });
        if (failing) return undefined;
      } catch (error) {
        if (signal?.aborted) break;
        if (error instanceof JobQueueError && !error.retryable) throw error;
        failing = true;
        onState({ state: "polling", attempt: 0, delayMs: this.pollIntervalMs, error });
      }
      const left = until - Date.now();
      if (left <= 0) return undefined;
      await sleep(Math.min(this.pollIntervalMs, left), signal);
    }
    return null;
  }

  _headers(extra = {}) {
    return this.token ? { ...extra, Authorization: "Bearer " + this.token } : extra;
  }

  _statusUrl(params) {
    const url = new URL(need(this.statusUrl, "statusUrl"), globalThis.location?.href);
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
    return url.toString();
  }

  async _json(url, init, { safe = false } = {}) {
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await this.fetch(url, init);
      } catch (error) {
        if (init.signal?.aborted) throw error;
        throw new JobQueueError(0, null, `Could not reach ${url}: ${error?.message || error}`);
      }
      if (response.ok) return response.status === 204 ? null : response.json();
      const error = await errorOf(response);
      if (!safe || !RETRY_AFTER.includes(error.status) || attempt >= this.maxRetries || init.signal?.aborted) throw error;
      await sleep(Math.min(this.maxRetryMs, error.retryAfterMs ?? 1000), init.signal);
    }
  }
}

function need(url, name) {
  if (!url) throw new TypeError(`createClient: ${name} is not set`);
  return url;
}

function listParams(query) {
  const params = {};
  for (const key of ["status", "kind", "createdAfter", "createdBefore", "limit", "cursor"]) {
    let value = query[key];
    if (value == null || value === "") continue;
    if (Array.isArray(value)) value = value.join(",");
    if (value instanceof Date) value = value.toISOString();
    params[key] = String(value);
  }
  return params;
}

function emitLogs(job, emit) {
  for (const line of job.logs || []) emit({ type: "log", id: String(line.seq), data: { kind: "log", ...line } });
}

function canStream() {
  return typeof ReadableStream !== "undefined" && typeof TextDecoder !== "undefined";
}

function backoff(baseMs, attempt, maxMs) {
  return Math.min(maxMs, Math.max(baseMs, 250) * 2 ** (attempt - 1));
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

async function errorOf(response) {
  const body = await response.json().catch(() => null);
  const error = new JobQueueError(response.status, body);
  const retryAfter = Number(response.headers.get("Retry-After"));
  if (retryAfter > 0) error.retryAfterMs = retryAfter * 1000;
  return error;
}

/** Server-Sent Events from a fetch body: {type, id, data} per event ({retry} for a retry: hint). */
export async function* readEvents(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseBlock(block);
        if (event) yield event;
      }
    }
  } finally {
    if (signal?.aborted || buffer) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function parseBlock(block) {
  let type = "message";
  let id = null;
  let retry = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a comment: keep-alive and the like
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  if (!data.length) return retry != null ? { type: "retry", id: null, data: null, retry } : null;
  const text = data.join("\n");
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { type, id, data: parsed };
}
