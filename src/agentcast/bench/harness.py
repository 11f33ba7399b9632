"""Where the benchmark's processes run, how many sockets they may open, and bounded waits.

The server under test gets the first CPU of this process's affinity set and
the receiver processes share the others, so a receiver never steals the
server's time slices and a slow receiver cannot hide inside the server's
numbers. With a single CPU nothing is pinned (and the report says so).
"""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

SERVER_CPU = 0
RECEIVER_CPU = 1


def available_cpus() -> list[int]:
    """The CPUs this process may run on, in order (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class CpuPlan:
    """Which CPU the server and each receiver process are pinned to (None: not pinned)."""

    server: int | None
    receivers: tuple[int | None, ...]

    @property
    def pinned(self) -> bool:
        return self.server is not None


def plan_cpus(receiver_processes: int | None = None) -> CpuPlan:
    """Server on the first CPU, ``receiver_processes`` (default: one per other CPU) on the rest."""
    cpus = available_cpus()
    if len(cpus) < 2:
        return CpuPlan(None, (None,) * (receiver_processes or 1))
    others = cpus[1:]
    count = receiver_processes or len(others)
    return CpuPlan(cpus[0], tuple(others[i % len(others)] for i in range(count)))


def pin_to_cpu(cpu: int | None) -> bool:
    """Pin the calling thread to ``cpu``; threads and processes it starts later inherit that.

    Returns False (and leaves the placement alone) for ``None``, on a single
    CPU, or where the platform has no ``sched_setaffinity``: the benchmark
    still runs, unpinned.
    """
    if cpu is None or (os.cpu_count() or 1) < 2:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return False
    return True


def ignore_interrupts() -> None:
    """In a child: let Ctrl-C pass. The terminal sends SIGINT to every process of the group;
    the parent alone handles it, stopping its children in order, so that none of them dies
    mid-step with a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit and return it: each client is a socket."""
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
        time.sleep(0.005)
