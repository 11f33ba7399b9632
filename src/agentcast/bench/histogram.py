"""Latency histograms that merge exactly: the compiled receiver's buckets, read in Python.

The layout is HdrHistogram's log-linear one over whole microseconds, and it is defined once,
in ``agentcast._receiver``; this module only calls its functions. Receiver processes and
rounds add their raw counts, so the percentiles of a sum are those of all its samples
together, to the layout's resolution (2 significant digits for a run's histogram).
"""

from __future__ import annotations

import math
from array import array

from agentcast._receiver import Layout, bucket_count, bucket_index, highest_equivalent

RUN_BITS = int(Layout.RUN_BITS)
CLIENT_BITS = int(Layout.CLIENT_BITS)


def micros(seconds: float) -> int:
    """A latency in whole microseconds, rounded as the compiled receiver rounds it."""
    return int(seconds * 1e6 + 0.5) if seconds > 0 else 0


class Histogram:
    """Counts of latencies (µs) in ``2**bits`` sub-buckets per power of two."""

    __slots__ = ("bits", "counts")

    def __init__(self, bits: int = RUN_BITS, counts: bytes = b"") -> None:
        self.bits = bits
        size = bucket_count(bits)
        self.counts: array[int] = array("q", counts or bytes(8 * size))  # bytes: frombytes
        if len(self.counts) != size:
            raise ValueError(f"{len(self.counts)} counts, expected {size}")

    def record(self, value: int) -> None:
        self.counts[bucket_index(value, self.bits)] += 1

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this one's (same layout)."""
        if other.bits != self.bits:
            raise ValueError(f"cannot merge {other.bits}-bit counts into {self.bits}-bit ones")
        for index, count in enumerate(other.counts):
            if count:
                self.counts[index] += count

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile(self, share: float) -> float:
        """Nearest-rank percentile (``share`` 0..1; 1 is the maximum), as the largest value
        of its bucket; NaN when empty."""
        total = self.total
        if not total:
            return math.nan
        rank = min(total, int(share * total) + 1)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return float(highest_equivalent(index, self.bits))
        raise AssertionError("unreachable: the ranks add up to the total")
