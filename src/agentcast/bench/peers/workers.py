"""agentcast scaled out: worker processes on one port, joined by a Redis backplane.

Each worker is a ``Broadcaster(reuse_port=True, backplane=URL)`` in a process
of its own (the kernel spreads the connections); the publisher thread here
publishes through a ``Publisher``, so each message crosses Redis once and
every worker fans it out to its own clients. Workers report their client
counts on stdout; closing their stdin stops them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from agentcast import Broadcaster, Publisher
from agentcast.bench.harness import ignore_interrupts
from agentcast.bench.peers import HOST

REPORT_EVERY = 0.05  # seconds between a worker's client-count lines
START_TIMEOUT = 30.0


class _Worker:
    """One worker process and the last client count it reported."""

    def __init__(self, backplane: str, port: int, settings: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, backplane, str(port), json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.clients = -1  # not ready yet
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.clients = int(line)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)


class WorkersPeer:
    """``workers`` agentcast processes sharing a port through ``backplane``."""

    def __init__(self, backplane: str, workers: int, **settings: Any) -> None:
        self.backplane = backplane
        self.count = workers
        self.settings = settings
        self._workers: list[_Worker] = []
        self._publisher: Publisher | None = None

    def start(self) -> int:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        self._workers = [_Worker(self.backplane, port, self.settings) for _ in range(self.count)]
        deadline = time.monotonic() + START_TIMEOUT
        while any(w.clients < 0 for w in self._workers):
            exited = any(w.process.poll() is not None for w in self._workers)
            if exited or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the workers did not start")
            time.sleep(0.01)
        self._publisher = Publisher(self.backplane).start()
        return port

    def publish(self, obj: Any) -> None:
        assert self._publisher is not None
        self._publisher.publish(obj)

    @property
    def client_count(self) -> int:
        return sum(max(0, w.clients) for w in self._workers)

    def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        for worker in self._workers:
            worker.stop()
        self._workers = []


def _serve(backplane: str, port: int, settings: dict[str, Any]) -> None:
    """A worker: serve until stdin closes, printing the client count as it goes."""
    hub = Broadcaster(
        HOST, port=port, ping_interval=0, reuse_port=True, backplane=backplane, **settings
    ).start()
    closed = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    try:
        while not closed.wait(REPORT_EVERY):
            print(hub.client_count, flush=True)
    finally:
        hub.stop()


if __name__ == "__main__":
    ignore_interrupts()  # the bench stops its workers itself, by closing their stdin
    _serve(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))
