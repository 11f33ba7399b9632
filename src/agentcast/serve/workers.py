"""``agentcast serve --workers N``: N server processes on one port, supervised.

Each worker is ``agentcast serve`` itself with ``--reuse-port`` (SO_REUSEPORT:
the kernel spreads new connections over the workers) and the same Redis
backplane, so a client on any worker gets every agent's messages. The parent
serves nothing: it restarts a worker that dies (giving up when one keeps
dying at once) and, on SIGTERM or SIGINT, passes SIGTERM on so that every
worker drains its clients, then waits for them.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("agentcast.workers")

POLL = 0.1  # seconds between looks at the workers
CRASH_WINDOW = 10.0  # a worker dying within this many seconds of its start counts as a crash
MAX_CRASHES = 5  # crashes in a row before the supervisor gives up
DRAIN_TIMEOUT = 15.0  # seconds the workers get to drain after SIGTERM
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In a new worker: SIGTERM it if the supervisor dies (even by SIGKILL), never orphan it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Keeps ``count`` copies of ``command`` running until told to stop."""

    def __init__(self, command: Sequence[str], count: int) -> None:
        self.command = list(command)
        self.count = count
        self.stopping = threading.Event()
        self.restarts = 0
        self._workers: list[tuple[subprocess.Popen[bytes], float]] = []

    def run(self) -> int:
        """Until SIGTERM/SIGINT; returns the exit code (1: a worker kept crashing)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())
        self._workers = [self._spawn() for _ in range(self.count)]
        crashes = 0
        try:
            while not self.stopping.wait(POLL):
                for slot, (process, started) in enumerate(self._workers):
                    code = process.poll()
                    if code is None:
                        continue
                    crashes = crashes + 1 if time.monotonic() - started < CRASH_WINDOW else 1
                    if crashes > MAX_CRASHES:
                        log.error("worker %d keeps dying (exit %d); giving up", process.pid, code)
                        return 1
                    log.warning("worker %d exited with %d; starting another", process.pid, code)
                    self.restarts += 1
                    self._workers[slot] = self._spawn()
            return 0
        finally:
            self._drain()

    def _spawn(self) -> tuple[subprocess.Popen[bytes], float]:
        # A worker's stdout says only where it serves and what it did: the supervisor
        # says that once for all of them. Its stderr (logs, errors) passes through.
        process = subprocess.Popen(
            self.command, preexec_fn=_die_with_parent, stdout=subprocess.DEVNULL
        )
        log.info("worker %d started", process.pid)
        return process, time.monotonic()

    def _drain(self) -> None:
        """SIGTERM to every worker; SIGKILL to those still running after ``DRAIN_TIMEOUT``."""
        for process, _ in self._workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for process, _ in self._workers:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not drain in time; killing it", process.pid)
                process.kill()
                process.wait()
