"""Rate limits per caller and action, counted in the database so that every instance of a
function shares them (a flood spread over ten instances is one flood).

Fixed windows of RATE_LIMIT_WINDOW_SECONDS on the database's clock: a caller gets `limit`
requests per window, and the one past it gets RateLimited, whose Retry-After is the time
left in the window. (A fixed window lets a caller send up to twice the limit across a
window boundary; at these rates that is fine, and it costs one upsert per request.)
Counters of ended windows are deleted by each instance once per window.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from shared.core.db import Pool
from shared.core.errors import RateLimited


class RateLimiter:
    def __init__(self, pool: Pool, window_seconds: int, clock: Callable[[], float] = time.monotonic):
        self.pool = pool
        self.window_seconds = window_seconds
        self.clock = clock
        self._forgot_at = -math.inf
        self._lock = threading.Lock()

    def count(self, action: str, caller: str, limit: int, weight: int = 1) -> None:
        """Count one request of `caller` for `action` (`weight` of them: the jobs of a bulk
        enqueue); RateLimited past `limit` (0: no limit). A refused request counts too."""
        if limit <= 0:
            return
        hits, seconds_left = self.hit(action, caller, weight)
        if hits > limit:
            what = "requests" if weight == 1 and action != "jobs" else "of them"
            raise RateLimited(
                f"Too many {action} {what}: at most {limit} per {self.window_seconds} s; retry later",
                retry_after_seconds=seconds_left,
            )

    def hit(self, action: str, caller: str, weight: int = 1) -> tuple[int, int]:
        """Count `weight` hits of `caller` for `action`: (hits in this window, whole seconds left in it)."""
        with self.pool.session() as session:
            row = session.row(
                "count_request", bucket=f"{action}:{caller}"[:300], window_seconds=self.window_seconds, weight=weight
            )
            if self._time_to_forget():
                session.rows("forget_rate_limits", window_seconds=self.window_seconds)
        return row["hits"], max(1, math.ceil(float(row["seconds_left"])))

    def _time_to_forget(self) -> bool:
        with self._lock:
            if self.clock() - self._forgot_at < self.window_seconds:
                return False
            self._forgot_at = self.clock()
            return True
