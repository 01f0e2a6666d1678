"""The notifier: one LISTEN connection per process, fanned out by topic. Status streams
(job_events) and cancels (job_cancel) are two topics on the same connection, not two
listeners; the connection comes with the first subscriber and goes with the last."""

from __future__ import annotations

import threading
import time

import pytest

from shared.core.notifier import JOB_CANCEL, JOB_EVENTS, Notifier

APPLICATION = "jobqueue-notifier-under-test"


def wait_until(predicate, timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def notifier_connections(session) -> int:
    return session.run_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name", name=APPLICATION)[0][
        0
    ]


class Inbox:
    def __init__(self):
        self.payloads: list[str] = []
        self.arrived = threading.Event()

    def __call__(self, payloads: list[str]) -> None:
        self.payloads.extend(payloads)
        self.arrived.set()


@pytest.fixture
def notifier(settings):
    made = Notifier(settings.direct_database, timeout=5.0, application_name=APPLICATION)
    yield made
    for subscription in list(made._subscriptions):
        subscription.close()
    wait_until(lambda: not made.running, what="the notifier to stop")


def test_both_topics_arrive_on_one_connection_each_to_its_own_subscribers(notifier, session):
    events, cancels = Inbox(), Inbox()
    heard_events = notifier.subscribe(JOB_EVENTS, events)
    heard_cancels = notifier.subscribe(JOB_CANCEL, cancels)
    wait_until(lambda: heard_events.listening and heard_cancels.listening, what="both topics to be heard")
    session.run_sql("SELECT pg_notify('job_events', 'job-1:7'), pg_notify('job_cancel', 'job-2')")
    assert events.arrived.wait(10) and cancels.arrived.wait(10)
    assert events.payloads == ["job-1:7"] and cancels.payloads == ["job-2"]
    assert notifier_connections(session) == 1 and notifier.connections == 1


def test_the_connection_closes_with_the_last_subscriber_and_comes_back_with_the_next(notifier, session):
    subscription = notifier.subscribe(JOB_CANCEL, Inbox())
    wait_until(lambda: subscription.listening, what="the topic to be heard")
    subscription.close()
    wait_until(lambda: notifier_connections(session) == 0, what="the connection to close")
    # The server sees the close a moment before the thread, past its last line, says it is done.
    wait_until(lambda: not notifier.running, what="the notifier's thread to end")
    cancels = Inbox()
    again = notifier.subscribe(JOB_CANCEL, cancels)
    wait_until(lambda: again.listening, what="the topic to be heard again")
    session.run_sql("SELECT pg_notify('job_cancel', 'job-3')")
    assert cancels.arrived.wait(10) and cancels.payloads == ["job-3"]


def test_a_dropped_connection_tells_the_subscribers_and_reconnects(notifier, session):
    told: list[str] = []
    cancels = Inbox()
    subscription = notifier.subscribe(
        JOB_CANCEL, cancels, on_listening=lambda: told.append("listening"), on_lost=lambda: told.append("lost")
    )
    wait_until(lambda: subscription.listening, what="the topic to be heard")
    notifier.drop_connection()
    wait_until(lambda: told[-1:] == ["listening"] and len(told) == 3, what="the reconnect")
    assert told == ["listening", "lost", "listening"]
    session.run_sql("SELECT pg_notify('job_cancel', 'job-4')")
    assert cancels.arrived.wait(10) and cancels.payloads == ["job-4"]


def test_a_topic_must_be_a_channel_name():
    with pytest.raises(ValueError, match="not a channel name"):
        Notifier(None).subscribe("job_events; DROP TABLE jobs", Inbox())
