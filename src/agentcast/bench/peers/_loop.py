"""A peer's event loop in its own thread, the way an agent process would run a server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CALL_TIMEOUT = 10.0


class LoopServer:
    """Runs ``setup()`` then the loop forever in a daemon thread; every call is bounded.

    agentcast's own ``LoopThread`` always uses uvloop; the peers choose their
    loop (``new_loop``) as their libraries recommend, so this is separate.
    """

    def __init__(self, new_loop: Callable[[], asyncio.AbstractEventLoop], name: str) -> None:
        self._new_loop = new_loop
        self._name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(
        self, setup: Callable[[], Coroutine[Any, Any, T]], timeout: float = CALL_TIMEOUT
    ) -> T:
        """Start the thread; return ``setup()``'s result, or raise its exception here."""
        ready: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(setup, ready), name=self._name, daemon=True
        )
        self._thread.start()
        return ready.result(timeout)

    def _run(
        self, setup: Callable[[], Coroutine[Any, Any, T]], ready: concurrent.futures.Future[T]
    ) -> None:
        loop = self._new_loop()
        asyncio.set_event_loop(loop)
        try:
            ready.set_result(loop.run_until_complete(setup()))
            self.loop = loop
            loop.run_forever()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
        finally:
            _cancel_pending(loop)
            loop.close()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedule ``callback(*args)`` on the loop, from any thread; does not wait."""
        assert self.loop is not None, "start() first"
        self.loop.call_soon_threadsafe(callback, *args)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the loop and wait for its result in the calling thread."""
        assert self.loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(
        self, shutdown: Callable[[], Coroutine[Any, Any, None]], timeout: float = CALL_TIMEOUT
    ) -> None:
        """Run ``shutdown()`` on the loop (bounded), stop it and join the thread."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, TimeoutError):
            self.run(shutdown(), timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self.loop = self._thread = None


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what a shutdown cut short (a slow server's backlog), so the loop closes quietly."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=CALL_TIMEOUT))
