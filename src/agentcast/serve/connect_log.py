"""Connect and disconnect lines up to a rate, then one summary line an interval.

Each connection writes two INFO lines, its connect and its disconnect. Nothing limits
connects on loopback, and MemGPT's own example client reconnects in a tight loop once its
stdin ends: one such client wrote 11,565 connections and ~23,000 lines in 10 s. Here the
connections logged are drawn from a token bucket; past it a connection writes neither
line and is counted, and one line an interval says how many were left out.

The numbers: a MemGPT server's clients are people and their scripts, a connect every
few seconds; ``BURST`` keeps a restart's reconnecting clients (up to 100) logged whole,
and ``RATE`` caps a flood at 20 lines a second (about 10 MB an hour) where it wrote
thousands. Every close is counted whether logged or not (``agentcast_closes_total``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agentcast.serve.token_bucket import TokenBucket

__all__ = ["BURST", "RATE", "SUMMARY_INTERVAL", "ConnectLog"]

RATE = 10.0
"""Connections a second whose lines are written, once a burst is spent."""
BURST = 100
"""Connections logged back to back before ``RATE`` holds."""
SUMMARY_INTERVAL = 10.0
"""Seconds from the first connection left out to the line counting them."""

CallLater = Callable[[float, Callable[[], None]], Any]


class ConnectLog:
    """Which connections get their connect and disconnect lines: ``allows()`` takes a
    token from a bucket of ``burst`` refilled at ``rate`` a second. A connection refused
    one is counted, and ``interval`` seconds after the first such one a line on ``logger``
    says how many there were (a timer only while connections are left out: none when
    idle, one an interval in a flood). ``close()`` writes the count still pending. O(1) a
    connection; loop thread only."""

    def __init__(
        self,
        logger: logging.Logger,
        call_later: CallLater,
        rate: float = RATE,
        burst: int = BURST,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._call_later = call_later
        self._lines = TokenBucket(rate, burst, clock)
        self.interval = interval
        self._clock = clock
        self._left_out = 0
        self._left_out_since = 0.0
        self._summary: Any = None  # the pending timer handle, while connections are left out

    def allows(self) -> bool:
        """Whether this new connection's lines are written; if not, it is counted."""
        if self._lines.take():
            return True
        if not self._left_out:
            self._left_out_since = self._clock()
            self._summary = self._call_later(self.interval, self._summarize)
        self._left_out += 1
        return False

    def close(self) -> None:
        """Write the count still pending (the server stops): no connection goes uncounted."""
        if self._summary is not None:
            self._summary.cancel()
            self._summarize()

    def _summarize(self) -> None:
        left_out, self._left_out = self._left_out, 0
        self._summary = None
        window = round(self._clock() - self._left_out_since, 3)
        self._logger.info(
            "%d more connections in the last %.1f s were not logged, nor their disconnects"
            " (lines for at most %g connections a second, bursts of %d)",
            left_out,
            window,
            self._lines.rate,
            self._lines.burst,
            extra={"not_logged": left_out, "window_s": window},
        )
