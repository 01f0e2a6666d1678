"""The Python client retries a 429 after its Retry-After for a request that is safe to repeat
(an enqueue whose job carries an idempotency key, in bulk when every job does), and hands
any other 429 back: sent twice, a keyless enqueue could queue its job twice."""

import time

import pytest

from client.api import JobQueueClient, JobQueueHTTPError
from local.stack import DEV_TOKEN, Stack

WINDOW = 10  # seconds: long enough for a loaded machine's few requests, short enough to wait out
LIMIT_ENV = {
    "RATE_LIMIT_ENQUEUE": "2",
    "RATE_LIMIT_WINDOW_SECONDS": str(WINDOW),
    "JOB_HANDLERS": "noop=tests.handlers:noop",
}


@pytest.fixture
def client(database_url, tmp_path):
    with Stack.on_free_ports(
        database_url=database_url, extra_env=LIMIT_ENV, scheduler=False, log_dir=tmp_path
    ) as stack:
        yield JobQueueClient(stack.url("enqueue"), stack.url("status"), stack.url("cancel"), token=DEV_TOKEN)


def until_refused(client: JobQueueClient) -> JobQueueHTTPError:
    """Keyless enqueues until the limit answers 429 (raised, not retried); at most a few windows."""
    for _ in range(20):
        try:
            client.enqueue({"kind": "noop"})
        except JobQueueHTTPError as refused:
            return refused
    raise AssertionError("the enqueue limit never answered 429")


def test_a_keyless_enqueue_is_not_retried_and_a_keyed_one_is(client):
    refused = until_refused(client)
    assert refused.status_code == 429
    job = client.enqueue({"kind": "noop"}, idempotencyKey="retry-me")  # waits out the window, then goes through
    assert job["jobStatus"] == "queued"
    assert client.enqueue({"kind": "noop"}, idempotencyKey="retry-me")["id"] == job["id"]


def at_the_start_of_a_window() -> None:
    """Windows start at whole multiples of their length (count_request.sql): begin just after
    one starts, so that a refusal and what the test does next fall in the same window (a 3 s
    window once ended in between on a loaded machine, and the keyless bulk went through)."""
    time.sleep(WINDOW - time.time() % WINDOW + 0.1)


def test_a_bulk_enqueue_is_retried_only_when_every_job_has_a_key(client):
    at_the_start_of_a_window()
    until_refused(client)
    with pytest.raises(JobQueueHTTPError) as refused:
        client.enqueue_many([{"kind": "noop", "idempotencyKey": "a"}, {"kind": "noop"}])
    assert refused.value.status_code == 429
    answers = client.enqueue_many([{"kind": "noop", "idempotencyKey": "a"}, {"kind": "noop", "idempotencyKey": "b"}])
    assert [answer["status"] for answer in answers] == [202, 202]
