// Type-checked by tsc (make test): the declarations describe the module as a user calls it.
import { createClient, JobQueueError, type Job, type StreamEvent } from "@jobqueue/client";

const client = createClient({ enqueueUrl: "/enqueue", statusUrl: "/status", cancelUrl: "/cancel", token: "t" });

async function journey(): Promise<void> {
  const job = await client.enqueue({ kind: "demo", steps: 3, idempotencyKey: "k" });
  const answers = await client.enqueueMany([{ kind: "demo", idempotencyKey: "k1" }, { kind: "demo" }]);
  answers.forEach((answer) => console.log("id" in answer ? answer.id : answer.error.code));
  const id: string = job.id;
  const dispatch: "sent" | "pending" | undefined = job.dispatch;
  const controller = new AbortController();
  const final: Job | null = await client.follow(id, {
    onEvent: (event: StreamEvent) => console.log(event.type, event.id, event.data),
    onState: ({ state, attempt, delayMs }) => console.log(state.toUpperCase(), attempt + delayMs),
    signal: controller.signal,
    lastEventId: 3,
  });
  if (final) console.log(final.jobStatus === "completed", final.progress.toFixed(0));
  const withLogs = await client.status(id);
  withLogs.logs.forEach((line) => console.log(line.seq, line.level, line.message));
  const cancelled = await client.cancel(id);
  console.log(cancelled.outcome === "cancel_requested", dispatch);
  const again = await client.rerun(id, { priority: 5 });
  const original: string | null = again.rerunOf;
  console.log(original);
  const page = await client.list({ status: ["queued", "running"], kind: "newsletter", limit: 20, createdAfter: new Date() });
  const next: string | null = page.nextCursor;
  page.jobs.forEach((listed) => console.log(listed.createdAt, listed.currentStep));
  await client.list({ cursor: next ?? undefined });
  await client.watchList({ status: "queued,running" }, { onEvent: (event) => console.log(event.data), signal: controller.signal });
  try {
    await client.status("nope");
  } catch (error) {
    if (error instanceof JobQueueError) console.log(error.status, error.code, error.details.map((d) => d.field), error.retryable);
  }
}

void journey;
