"""One token bucket: what the server's log lines across connections are drawn from (connect
and disconnect lines, bad-request lines), so a flood of connections costs counts, not lines."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second; ``take()`` is O(1). One thread only."""

    __slots__ = ("_clock", "_refilled_at", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._refilled_at = clock()

    def take(self) -> bool:
        """Take a token if there is one: whether there was."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
