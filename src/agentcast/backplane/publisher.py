"""Publishers for agent fleets: processes that hold no WebSocket clients.

Agent workers publish through Redis; broadcaster nodes (``Broadcaster(backplane=...)``,
``agentcast serve --redis``) deliver. A publish is numbered by the same script
as a node's own, so ``seq`` stays contiguous per channel whoever publishes,
and each publisher's messages keep its order. ``publish`` is an O(1) append
from any thread; the event loop sends pipelined batches (see ``Outbox``).
The MemGPT interfaces work on top: ``SyncWebSocketInterface(Publisher(url).start())``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson

from agentcast.backplane import require_redis
from agentcast.serve.loop import LoopThread
from agentcast.streams.events import check_channel, check_event
from agentcast.streams.producer import Run

__all__ = ["AsyncPublisher", "Publisher"]

CONNECT_TIMEOUT = 5.0  # seconds for the first connection


class AsyncPublisher:
    """A Redis publisher on the caller's event loop: ``async with AsyncPublisher(url) as p``.

    ``history_size`` and ``channel_ttl`` are the nodes' (give it theirs): Redis keeps
    about ``history_size`` messages per channel, and a channel's keys for twice
    ``channel_ttl`` after its last publish (see ``agentcast.backplane.script``).
    """

    def __init__(
        self,
        url: str,
        *,
        history_size: int = 1000,
        channel_ttl: float | None = 300.0,
        max_pending: int = 100_000,
        default: Callable[[Any], Any] | None = None,
    ) -> None:
        require_redis()
        self.url = url
        self._history_size = history_size
        self._channel_ttl = channel_ttl
        self._max_pending = max_pending
        self._default = default
        self._redis: Any = None
        self._outbox: Any = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> AsyncPublisher:
        """Connect; raises here if Redis cannot be reached."""
        import redis.asyncio as aioredis  # the redis extra

        from agentcast.backplane.outbox import Outbox
        from agentcast.backplane.redis import reach
        from agentcast.backplane.script import key_ttl_ms

        if self._task is not None:
            raise RuntimeError("the publisher was already started")
        loop = self._loop = asyncio.get_running_loop()
        self._redis = aioredis.Redis.from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT)
        await reach(self._redis, self.url)
        self._outbox = Outbox(
            self._redis,
            loop,
            history_size=self._history_size,
            key_ttl_ms=key_ttl_ms(self._channel_ttl),
            max_pending=self._max_pending,
        )
        self._task = loop.create_task(self._outbox.run(), name="agentcast-publisher")
        return self

    def publish(self, obj: Any, channel: str | None = None) -> None:
        """Serialize ``obj`` once (orjson) and queue it for ``channel`` (None: every client)."""
        self.publish_json(orjson.dumps(obj, default=self._default), channel)

    def publish_json(self, data: bytes, channel: str | None = None) -> None:
        """Queue already-serialized JSON for ``channel``; safe from any thread."""
        from agentcast.backplane.script import channel_name

        if self._outbox is None:
            raise RuntimeError("the publisher is not running: call start() first")
        self._outbox.put(None if channel is None else channel_name(channel), data)

    def publish_event(self, event: dict[str, Any], channel: str) -> None:
        """Queue one agent event (checked here: ``BadEvent``) for ``channel``; the nodes
        number it and encode it for each wire protocol, as their own."""
        self.publish_json(orjson.dumps(check_event(event)), check_channel(channel))

    def run(
        self,
        channel: str,
        run_id: str | None = None,
        thread_id: str | None = None,
        *,
        rollup: float = 0.0,
        prompt: str | None = None,
    ) -> Run:
        """A run on ``channel`` (see ``agentcast.streams.producer``); ``rollup`` s: deltas
        that come close together go as one; ``prompt``: the user's message it answers."""
        return Run(self.publish_event, channel, run_id, thread_id, rollup, self._later, prompt)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the publisher's loop in ``delay`` s (from any thread)."""
        if self._loop is None:
            raise RuntimeError("the publisher is not running: call start() first")
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, callback)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until Redis has applied everything published so far; False on timeout."""
        if self._outbox is None:
            return True
        return bool(await self._outbox.drained(timeout))

    async def close(self, timeout: float = 5.0) -> None:
        """Flush (at most ``timeout`` s), then disconnect. Calling it again does nothing."""
        if self._task is None:
            return
        await self.flush(timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._redis.aclose()

    def stats(self) -> dict[str, int]:
        outbox = self._outbox
        if outbox is None:
            return {}
        return {
            "pending": outbox.pending,
            "acked": outbox.acked,
            "dropped": outbox.dropped,
            "failed": outbox.failed,
            "publish_retries": outbox.reconnects,
        }

    async def __aenter__(self) -> AsyncPublisher:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Publisher:
    """The same for synchronous code: the connection lives on a loop thread of its own."""

    def __init__(self, url: str, **options: Any) -> None:
        self._async = AsyncPublisher(url, **options)
        self._thread = LoopThread("agentcast-publisher")

    def start(self) -> Publisher:
        """Connect; raises here if Redis cannot be reached."""
        self._thread.start(self._async.start)
        return self

    def publish(self, obj: Any, channel: str | None = None) -> None:
        self._async.publish(obj, channel)

    def publish_json(self, data: bytes, channel: str | None = None) -> None:
        self._async.publish_json(data, channel)

    def publish_event(self, event: dict[str, Any], channel: str) -> None:
        self._async.publish_event(event, channel)

    def run(
        self,
        channel: str,
        run_id: str | None = None,
        thread_id: str | None = None,
        *,
        rollup: float = 0.0,
        prompt: str | None = None,
    ) -> Run:
        return self._async.run(channel, run_id, thread_id, rollup=rollup, prompt=prompt)

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until Redis has applied everything published so far; False on timeout."""
        return bool(self._thread.run(self._async.flush(timeout), timeout + 1.0))

    def close(self, timeout: float = 5.0) -> None:
        self._thread.stop(lambda: self._async.close(timeout), timeout + 1.0)

    def stats(self) -> dict[str, int]:
        return self._async.stats()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._thread.loop

    @property
    def thread(self) -> Any:
        return self._thread.thread

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
