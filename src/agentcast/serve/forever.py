"""``serve_forever``: run a server in the main thread until SIGINT or SIGTERM, then stop it.

The wait is a ``select`` on a socket the signal's C-level handler writes to
(``signal.set_wakeup_fd``), whichever thread the kernel delivered the signal to.
A main thread blocked on a lock or an event would not wake when the loop thread
takes the signal, and the server would never stop.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Protocol

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

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


def _wait(wakeups: socket.socket) -> int:
    """Block until one of ``STOP_SIGNALS`` arrives; return its number."""
    while True:
        select.select([wakeups], [], [])
        for signum in wakeups.recv(64):
            if signum in STOP_SIGNALS:
                return signum


def serve_forever(
    server: Servable, timeout: float = 5.0, ready: Callable[[], object] | None = None
) -> dict[str, int]:
    """Start ``server`` unless it runs, block until SIGINT or SIGTERM, then ``stop`` it
    (clients closed with 1001 after what is queued for them, within ``timeout`` s).

    ``ready()`` is called once it serves and the signals are caught: a Ctrl-C from then
    on stops it cleanly (say "listening" there). Returns ``server.stats()`` as they stood
    when the signal came. Main thread only.
    """
    with stop_signals() as wakeups:
        try:
            if not server.running:
                server.start()
            if ready is not None:
                ready()
            _wait(wakeups)
            return server.stats()
        finally:
            server.stop(timeout)
