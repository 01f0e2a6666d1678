// Types for jobqueue.js: the job queue's client for browsers and Node 18+.

export type JobStatus = "queued" | "running" | "completed" | "failed" | "cancelled";

/** A job as the functions answer it (the seed's camelCase field names). */
export interface Job {
  id: string;
  generationId: string;
  kind: string;
  jobStatus: JobStatus;
  progress: number;
  currentStep: string | null;
  priority: number;
  attempts: number;
  maxAttempts: number;
  createdAt: string;
  runAt: string;
  processedAt: string | null;
  finishedAt: string | null;
  lastHeartbeat: string | null;
  result: unknown;
  error: string | null;
  cancelRequested: boolean;
  callbackUrl: string | null;
  /** The failed or cancelled job this one re-runs. */
  rerunOf: string | null;
  /** In list answers: the tenant the job belongs to. */
  tenant?: string;
  statusUrl?: string;
  streamUrl?: string;
  [field: string]: unknown;
}

export interface LogLine {
  seq: number;
  level: "debug" | "info" | "warning" | "error";
  message: string;
  at: string;
}

export interface JobWithLogs extends Job {
  logs: LogLine[];
  /** The newest status message, as the stream shows it. */
  message: string | null;
  /** The newest preview's text so far, and its format. */
  preview: string | null;
  previewFormat: string | null;
  /** The job's last event: the stream resumes after it. */
  lastEventSeq: number;
}

export interface EnqueuedJob extends Job {
  dispatch?: "sent" | "pending";
}

export interface CancelledJob extends Job {
  outcome: "cancelled" | "cancel_requested" | "already_cancelled";
}

/** The queue options; every other field is the job's payload. */
export interface EnqueueBody {
  kind?: string;
  priority?: number;
  runAt?: string;
  maxAttempts?: number;
  idempotencyKey?: string;
  callbackUrl?: string;
  /** Re-run this failed or cancelled job (its kind and payload). */
  rerunOf?: string;
  [payload: string]: unknown;
}

export interface ListQuery {
  /** One status or several (sent comma-separated). */
  status?: JobStatus | JobStatus[] | string;
  kind?: string;
  createdAfter?: string | Date;
  createdBefore?: string | Date;
  /** At most 100. */
  limit?: number;
  /** The nextCursor of the previous page. */
  cursor?: string;
}

export interface JobPage {
  jobs: Job[];
  nextCursor: string | null;
}

/** One Server-Sent Event: `type` is its event name, `id` its sequence number (as sent). */
export interface StreamEvent<T = any> {
  type: string;
  id: string | null;
  data: T;
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "polling" | "finished";

export interface StateChange {
  state: ConnectionState;
  /** Failed attempts in a row (reconnecting). */
  attempt: number;
  /** How long until the next try, in milliseconds. */
  delayMs: number;
  /** Why the last try failed: with "polling", a check that failed (the function cannot be reached). */
  error?: unknown;
}

export interface FollowOptions {
  onEvent?: (event: StreamEvent) => void;
  onState?: (change: StateChange) => void;
  signal?: AbortSignal;
  /** Resume after this event (its sequence number). */
  lastEventId?: number | string;
}

export interface WatchListOptions {
  /** {type: "snapshot", data: {jobs}} on each (re)connect, then {type: "job", data: job} per change. */
  onEvent?: (event: StreamEvent) => void;
  onState?: (change: StateChange) => void;
  signal?: AbortSignal;
}

export interface ClientOptions {
  enqueueUrl?: string;
  statusUrl?: string;
  cancelUrl?: string;
  /** Bearer token: enqueue (when the deployment requires it), cancel, list and watchList. */
  token?: string | null;
  fetch?: typeof fetch;
  retryMs?: number;
  maxRetryMs?: number;
  pollAfterFailures?: number;
  pollIntervalMs?: number;
  /** Retries of a 429 or 503 after Retry-After, for requests safe to repeat (default 3). */
  maxRetries?: number;
}

/** A bulk enqueue's answer for a job that was queued (202) or that its idempotencyKey named (200). */
export interface BulkEnqueued extends EnqueuedJob {
  status: 200 | 202;
}

/** A bulk enqueue's answer for a job refused alone (the others were queued). */
export interface BulkRefused {
  status: 400 | 409 | 413;
  error: { code: string; message: string; details?: { field: string; message: string }[] };
}

export type BulkAnswer = BulkEnqueued | BulkRefused;

export interface RequestOptions {
  signal?: AbortSignal;
}

export declare class JobQueueError extends Error {
  /** The HTTP status, or 0 when the function could not be reached. */
  readonly status: number;
  readonly code: string;
  readonly details: { field: string; message: string }[];
  readonly body: unknown;
  retryAfterMs: number | null;
  readonly retryable: boolean;
}

export declare class JobQueueClient {
  constructor(options?: ClientOptions);
  enqueueUrl: string | null;
  statusUrl: string | null;
  cancelUrl: string | null;
  token: string | null;
  enqueue(body: EnqueueBody, options?: RequestOptions): Promise<EnqueuedJob>;
  /** Up to 1,000 jobs in one request and one transaction: an answer per job, in order. */
  enqueueMany(jobs: EnqueueBody[], options?: RequestOptions): Promise<BulkAnswer[]>;
  /** Queue a failed or cancelled job again; `options` are queue options (priority, maxAttempts ...). */
  rerun(id: string, options?: EnqueueBody, request?: RequestOptions): Promise<EnqueuedJob>;
  status(id: string, options?: RequestOptions): Promise<JobWithLogs>;
  cancel(id: string, options?: RequestOptions): Promise<CancelledJob>;
  list(query?: ListQuery, options?: RequestOptions): Promise<JobPage>;
  /** Resolves with the finished job, or null when the signal aborts. */
  follow(id: string, options?: FollowOptions): Promise<Job | null>;
  /** Resolves (null) when the signal aborts. */
  watchList(query?: ListQuery, options?: WatchListOptions): Promise<null>;
}

export declare function createClient(options?: ClientOptions): JobQueueClient;

export declare function readEvents(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<StreamEvent | { type: "retry"; id: null; data: null; retry: number }>;
