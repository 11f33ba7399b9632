"""``serve_forever``: run a server in the main thread until SIGINT or SIGTERM, then stop it.

The wait is a ``select`` on a socket the signal's C-level handler writes to
(``signal.set_wakeup_fd``), whichever thread the kernel delivered the signal to.
A main thread blocked on a lock or an event would not wake when the loop thread
takes the signal, and the server would never stop.

A second signal while it stops ends the process at once (exit 128 + the signal), as a
second Ctrl-C does for other servers: a stop waits for running work, such as an agent step
that streams for minutes, and nothing else could end it short of SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Protocol

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SLOW_STOP = 3.0  # seconds of stopping after which it says how to end it short

__all__ = ["STOP_SIGNALS", "Servable", "serve_forever", "stop_signals"]


class Servable(Protocol):
    @property
    def running(self) -> bool: ...
    def start(self) -> object: ...
    def stop(self, timeout: float = ...) -> None: ...
    def stats(self) -> dict[str, int]: ...


def _note(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing to do, the wake-up byte carries the news."""


@contextlib.contextmanager
def stop_signals() -> Iterator[socket.socket]:
    """While inside, SIGINT and SIGTERM write their number to the socket yielded
    (instead of raising KeyboardInterrupt or ending the process). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve_forever() must be called from the main thread")
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _note) for signum in STOP_SIGNALS}
    try:
        yield reader
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        reader.close()
        writer.close()


def _stop_signals_read(wakeups: socket.socket) -> list[int]:
    """The ``STOP_SIGNALS`` among the wake-up bytes waiting on ``wakeups``."""
    return [signum for signum in wakeups.recv(64) if signum in STOP_SIGNALS]


def _wait(wakeups: socket.socket) -> list[int]:
    """Block until one of ``STOP_SIGNALS`` arrives; those that came (two, if a second came
    at once)."""
    while True:
        select.select([wakeups], [], [])
        signals = _stop_signals_read(wakeups)
        if signals:
            return signals


def _say(line: str) -> None:
    print(f"agentcast: {line}", file=sys.stderr, flush=True)


def _exit_at_once(signum: int) -> None:
    _say("a second signal while stopping: exiting now, without waiting for what still runs")
    os._exit(128 + signum)


def _stop(server: Servable, timeout: float, wakeups: socket.socket) -> None:
    """``server.stop(timeout)`` in a thread of its own, the main thread watching for a
    second signal meanwhile (``_exit_at_once``)."""
    finished, finishing = socket.socketpair()
    failures: list[BaseException] = []

    def stop() -> None:
        try:
            server.stop(timeout)
        except BaseException as exc:  # raised in the caller's thread below
            failures.append(exc)
        finally:
            finishing.send(b"\0")

    stopper = threading.Thread(target=stop, name="agentcast-stop", daemon=True)
    stopper.start()
    try:
        hint_after: float | None = SLOW_STOP
        while True:
            readable, _, _ = select.select([wakeups, finished], [], [], hint_after)
            if not readable:  # still stopping: say how to end it short
                _say("still stopping, waiting for what runs; a second Ctrl-C or SIGTERM exits now")
                hint_after = None
                continue
            if finished in readable:
                break
            for signum in _stop_signals_read(wakeups):
                _exit_at_once(signum)
    finally:
        stopper.join()
        finished.close()
        finishing.close()
    if failures:
        raise failures[0]


def serve_forever(
    server: Servable, timeout: float = 5.0, ready: Callable[[], object] | None = None
) -> dict[str, int]:
    """Start ``server`` unless it runs, block until SIGINT or SIGTERM, then ``stop`` it
    (clients closed with 1001 after what is queued for them, within ``timeout`` s).

    ``ready()`` is called once it serves and the signals are caught: a Ctrl-C from then
    on stops it cleanly (say "listening" there). Returns ``server.stats()`` as they stood
    when the signal came. A second signal while it stops ends the process at once, exit
    128 + the signal, with one line on stderr. Main thread only.
    """
    with stop_signals() as wakeups:
        try:
            if not server.running:
                server.start()
            if ready is not None:
                ready()
            signals = _wait(wakeups)
            stats = server.stats()
            if len(signals) > 1:  # the second came with the first
                _exit_at_once(signals[1])
            return stats
        finally:
            _stop(server, timeout, wakeups)
