"""make scale sets the rate limits it needs: every request it sends, counted by the real
limiter against the test database, is let through; with the tenant defaults it would meet a
429 (which is how make scale stopped once the limits were merged)."""

import pytest

from bench.scale.options import arguments, rate_limits, requests_sent
from shared.core.errors import RateLimited
from shared.core.ratelimit import RateLimiter
from shared.core.settings import Settings

LIMITS = {"enqueue": "rate_limit_enqueue", "jobs": "rate_limit_jobs", "cancel": "rate_limit_cancel"}


def send_all(pool, settings: Settings, sent: dict[str, int]) -> None:
    """Count every request of the run in one window, as the edge does (one tenant: the bench's token)."""
    limiter = RateLimiter(pool, settings.rate_limit_window_seconds)
    for action, count in sent.items():
        for _ in range(count):
            limiter.count(action, "tenant:default", getattr(settings, LIMITS[action]))


@pytest.mark.parametrize("argv", [[], ["--jobs", "300", "--cancel", "30", "--wait-jobs", "20"]])
def test_the_runs_own_limits_let_every_request_through(pool, env, argv):
    args = arguments(argv)
    settings = Settings.from_env({**env, **rate_limits(args)})
    assert set(requests_sent(args)) == set(LIMITS)
    send_all(pool, settings, requests_sent(args))  # no RateLimited


def test_with_the_tenant_defaults_the_run_would_meet_a_429(pool, env):
    args = arguments([])
    with pytest.raises(RateLimited):
        send_all(pool, Settings.from_env(env), requests_sent(args))
