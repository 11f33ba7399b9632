"""``agentcast.SyncClient``: ``agentcast.Client`` for code without an event loop.

::

    with SyncClient("ws://127.0.0.1:8282/", channel="demo") as client:
        client.send("hello")
        for event in client:
            ...

A façade, not a second client: one ``Client`` runs on a private event loop in its own
thread, and every call here waits for the matching call there. The view (``messages``,
``tool_calls``, ``runs``, ``last_seq``, ``notices``) changes only while ``next()`` is
waiting, so the thread that iterates reads it between events without a lock.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Literal, TypeVar

from agentcast.client.stream import Client, ClientError
from agentcast.client.view import ToolCall

__all__ = ["SyncClient"]

T = TypeVar("T")


class SyncClient:
    """Watch ``channel`` at ``url`` from a plain thread: ``Client``'s arguments, a context
    manager and an iterator of events. Use it in a ``with`` block (or call ``close()``):
    the loop thread runs until then."""

    def __init__(self, url: str, channel: str | Iterable[str], **options: Any) -> None:
        self.client = Client(url, channel, **options)  # bad arguments raise here, in the caller
        self._state: Literal["new", "open", "closed"] = "new"
        self._loop: asyncio.AbstractEventLoop  # made by open(), with its thread
        self._thread: threading.Thread

    @property
    def messages(self) -> dict[str, str]:
        return self.client.messages

    @property
    def tool_calls(self) -> dict[str, ToolCall]:
        return self.client.tool_calls

    @property
    def runs(self) -> dict[str, dict[str, Any] | None]:
        return self.client.runs

    @property
    def last_seq(self) -> dict[str, int]:
        return self.client.last_seq

    @property
    def notices(self) -> deque[dict[str, Any]]:
        return self.client.notices

    @property
    def connections(self) -> int:
        return self.client.connections

    def open(self) -> SyncClient:
        """Start the loop thread, connect and subscribe (as ``async with Client``)."""
        if self._state != "new":
            return self
        self._state = "open"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agentcast-client", daemon=True
        )
        self._thread.start()
        try:
            self._call(self.client.__aenter__())
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> SyncClient:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> SyncClient:
        return self

    def __next__(self) -> dict[str, Any]:
        """The next new event (blocking), reconnecting as needed; StopIteration at the end."""
        if self._state == "closed":
            raise StopIteration
        try:
            return self._call(self.client.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def send(self, message: str, channel: str | None = None) -> None:
        """``Client.send``: blocks until the message is written. Any thread may call it."""
        self._call(self.client.send(message, channel))

    def subscribe(self, channel: str, since: int | None = None) -> None:
        self._call(self.client.subscribe(channel, since))

    def unsubscribe(self, channel: str) -> None:
        self._call(self.client.unsubscribe(channel))

    def close(self) -> None:
        """Close the connection, end a ``next()`` waiting in another thread, stop the loop
        thread and wait for it. Idempotent."""
        state, self._state = self._state, "closed"
        if state == "open":
            asyncio.run_coroutine_threadsafe(_shut_down(self.client), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._state != "open":
            coroutine.close()
            raise ClientError(
                "the client is closed"
                if self._state == "closed"
                else "open the client first: with SyncClient(...) as client"
            )
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()


async def _shut_down(client: Client) -> None:
    """Close ``client``, then let every task it left (a ``next()`` ending) finish."""
    await client.close()
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    if tasks:
        await asyncio.wait(tasks)
