"""Where the benchmark's processes run, how many sockets they may open, and bounded waits.

On a 2-core machine the server (its loop thread and the publishing thread) gets
CPU 0 and the receiver process gets CPU 1, so the two never steal each other's
time slices and a slow receiver cannot hide inside the server's numbers.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable

SERVER_CPU = 0
RECEIVER_CPU = 1


def pin_to_cpu(cpu: int) -> bool:
    """Pin the calling thread to ``cpu``; threads and processes it starts later inherit that.

    Returns False (and leaves the placement alone) where the CPU does not exist
    or the platform has no ``sched_setaffinity``: the benchmark still runs, unpinned.
    """
    if (os.cpu_count() or 1) < 2:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return False
    return True


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit: 1,000 clients are 1,000 sockets per side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail loudly rather than let a benchmark hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.001)
