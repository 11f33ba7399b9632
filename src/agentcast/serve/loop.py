"""The dedicated uvloop thread: started, used and stopped from any other thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")

log = logging.getLogger("agentcast.loop")


def _handle_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A client's failed TLS handshake (it does not trust the certificate, or it spoke plain
    HTTP) is the client's doing: logged at debug, as uvloop's own TLS does, not as the loop
    error aiofastnet's TLS reports, so that such clients cannot fill a server's error log.
    (aiofastnet 1.2 passes the exception's class, not an instance, for a reset peer.)"""
    failure = context.get("exception")
    kind = failure if isinstance(failure, type) else type(failure)
    if context.get("message") == "SSL handshake failed" and issubclass(kind, OSError):
        log.debug("a client's TLS handshake failed: %s", failure)
        return
    loop.default_exception_handler(context)


class LoopThread:
    """A uvloop event loop in its own thread.

    ``start`` returns only after ``setup`` has finished on the loop, and
    re-raises its exception (e.g. "address in use") in the caller's thread.
    ``stop`` runs ``shutdown`` on the loop, stops it, closes it and joins the
    thread; calling it again does nothing. A ``call`` the loop has not run by
    then (it raced ``stop``, or the loop hung) raises RuntimeError instead of
    waiting for a loop that is gone.
    """

    def __init__(self, name: str = "agentcast-loop") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._calls: set[concurrent.futures.Future[Any]] = set()  # waiting in call()
        self._calls_lock = threading.Lock()  # orders a call's check of loop against stop

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, setup: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        if self.thread is not None:
            raise RuntimeError("the loop thread was already started")
        ready: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.thread = threading.Thread(
            target=self._run, args=(setup, ready), name=self.name, daemon=True
        )
        self.thread.start()
        try:
            return ready.result(timeout)
        except BaseException:
            self.thread.join(timeout)
            self.thread = None
            raise

    def _run(self, setup: Callable[[], Awaitable[T]], ready: concurrent.futures.Future[T]) -> None:
        loop = uvloop.new_event_loop()
        loop.set_exception_handler(_handle_exception)
        asyncio.set_event_loop(loop)
        try:
            ready.set_result(loop.run_until_complete(setup()))
        except BaseException as exc:
            ready.set_exception(exc)
            _close_loop(loop)
            return
        self.loop = loop
        try:
            loop.run_forever()
        finally:
            _close_loop(loop)
            self._cancel_calls()

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        if self.loop is None:
            raise RuntimeError("the loop thread is not running")
        self.loop.call_soon_threadsafe(callback, *args)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function(*args)`` on the loop thread and return its result (direct if there)."""
        if threading.current_thread() is self.thread:
            return function(*args)
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call_on_loop() -> None:
            if not result.set_running_or_notify_cancel():
                return  # the loop was stopped before it got here
            try:
                result.set_result(function(*args))
            except BaseException as exc:
                result.set_exception(exc)

        with self._calls_lock:
            if self.loop is None:
                raise RuntimeError("the loop thread is not running")
            loop = self.loop
            self._calls.add(result)
        try:
            loop.call_soon_threadsafe(call_on_loop)
            return result.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError("the loop thread stopped before running the call") from None
        finally:
            with self._calls_lock:
                self._calls.discard(result)

    def _cancel_calls(self) -> None:
        """Fail every ``call`` still waiting: the loop will not run them now."""
        with self._calls_lock:
            calls, self._calls = self._calls, set()
        for call in calls:
            call.cancel()

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop and wait for its result in the calling thread."""
        if self.loop is None:
            raise RuntimeError("the loop thread is not running")
        if threading.current_thread() is self.thread:
            raise RuntimeError("run() would deadlock on the loop thread itself")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, shutdown: Callable[[], Awaitable[None]], timeout: float) -> None:
        thread, loop = self.thread, self.loop
        if thread is None or loop is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("stop() must not be called from the loop thread")
        try:
            self.run(shutdown(), timeout)
        except (concurrent.futures.TimeoutError, TimeoutError):
            log.warning("shutdown did not finish within %.1f s; stopping the loop", timeout)
        finally:
            with self._calls_lock:
                self.loop = None
            self.thread = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._cancel_calls()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left, then close the loop so its fds are released."""
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
