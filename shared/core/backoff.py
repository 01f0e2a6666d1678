"""The one backoff formula: a job's retry, a webhook's next delivery and a lost LISTEN
connection's reconnect all wait this long.

Exponential, capped, with jitter: between half and all of base * 2^(attempt-1). The jitter
spreads out many retries that failed together (a database blip fails every running job at
once), and the lower half-bound keeps a retry from coming back at once."""

from __future__ import annotations

import random

# A generator of its own: background threads (the notifier's reconnects) draw from it, and
# the process's global `random` state, which tests seed and property tests watch, stays put.
_JITTER = random.Random()


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random = _JITTER) -> float:
    """The wait before try number `attempt + 1` (attempt 1 is the first failure)."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
