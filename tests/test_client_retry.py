"""The Python client retries a 429 after its Retry-After for a request that is safe to repeat
(an enqueue whose job carries an idempotency key, in bulk when every job does), and hands
any other 429 back: sent twice, a keyless enqueue could queue its job twice."""

import pytest

from client.api import JobQueueClient, JobQueueHTTPError
from local.stack import DEV_TOKEN, Stack

LIMIT_ENV = {"RATE_LIMIT_ENQUEUE": "2", "RATE_LIMIT_WINDOW_SECONDS": "3", "JOB_HANDLERS": "noop=tests.handlers:noop"}


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


def test_a_bulk_enqueue_is_retried_only_when_every_job_has_a_key(client):
    assert mixed_keys_refused(client).status_code == 429
    answers = client.enqueue_many([{"kind": "noop", "idempotencyKey": "a"}, {"kind": "noop", "idempotencyKey": "b"}])
    assert [answer["status"] for answer in answers] == [202, 202]


def mixed_keys_refused(client: JobQueueClient) -> JobQueueHTTPError:
    """The 429 a bulk request with one keyless job gets, handed back rather than retried. On a
    slow machine the limit's window can end between the refusal that fills it and this request,
    which then goes through: fill the next window and ask again (the keyed job "a" is the same
    job each time, the keyless one a new one)."""
    for _ in range(5):
        until_refused(client)
        try:
            client.enqueue_many([{"kind": "noop", "idempotencyKey": "a"}, {"kind": "noop"}])
        except JobQueueHTTPError as refused:
            return refused
    raise AssertionError("a bulk request with a keyless job was never refused in five windows")
