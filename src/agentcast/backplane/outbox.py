"""Publishes from any thread to Redis: batched script calls, in order, exactly once.

``put`` is what an agent's thread pays: one deque append and, at most once per
batch, a wake-up of the event loop that owns the connection. The loop sends
what is queued in batches, each one script call that numbers, stores and
announces its messages in order, so each publisher keeps its order. A batch that
fails (broker down, reply lost) is sent again after a backoff: the script
skips indexes it already applied, broadcasts included, so a retry never doubles
a message. A message Redis refuses is counted and logged; the rest of its batch
goes through. While
the broker is away the queue is bounded: beyond ``max_pending`` a publish is
dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis import exceptions as redis_errors

from agentcast.backplane import script

log = logging.getLogger("agentcast.backplane")

BATCH = 256  # publishes per script call (Redis runs one call at a time: keep it short)
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0  # seconds between attempts while the broker is away
DROP_LOG_EVERY = 10.0  # seconds between "dropping" warnings

# (index, channel or None for everyone, payload)
Item = tuple[int, str | None, bytes]
# (index, channel or None, seq, epoch): the publish is delivered once its stream reaches
# seq in that epoch, or a later epoch (for one applied before: the stream's seq then);
# seq 0 for one Redis refused.
Ack = tuple[int, str | None, int, bytes | None]

# Failures of a whole call that the same call, sent again later, gets past: the broker
# away, or one of its "not now" answers (those redis-py gives a class of their own).
NOT_NOW = (
    redis_errors.ConnectionError,  # BusyLoadingError (LOADING) is one
    redis_errors.TimeoutError,
    OSError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    redis_errors.MasterDownError,
    redis_errors.ClusterDownError,
    redis_errors.OutOfMemoryError,
)


def worth_retrying(exc: Exception) -> bool:
    """Whether a failed call should be sent again (see ``NOT_NOW``, ``script.TRANSIENT``)."""
    if isinstance(exc, NOT_NOW):
        return True
    return isinstance(exc, redis_errors.ResponseError) and script.transient(str(exc))


class Outbox:
    """The publishing half of a backplane connection; runs on one event loop."""

    def __init__(
        self,
        redis: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        history_size: int,
        key_ttl_ms: int,
        max_pending: int = 100_000,
        on_ack: Callable[[list[Ack]], None] | None = None,
    ) -> None:
        self.publisher = uuid.uuid4().hex
        self._publisher_bytes = self.publisher.encode()
        self._redis = redis
        self._loop = loop
        self._maxlen = max(1, history_size)
        self._key_ttl_ms = key_ttl_ms
        self._max_pending = max_pending
        self._on_ack = on_ack
        self._items: collections.deque[Item] = collections.deque()
        self._indexes = itertools.count(1)
        self._order = threading.Lock()  # an index and its place in the queue go together
        self._thread_last = threading.local()
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._sha: str | None = None
        self.last_index = 0  # the last index handed out
        self.acked = 0  # every index up to this one is applied
        self.dropped = 0  # the queue was full
        self.failed = 0  # Redis refused them
        self.reconnects = 0
        self.unreachable = False  # the last attempt could not reach Redis
        self._dropped_logged_at = self._refused_logged_at = -DROP_LOG_EVERY

    # ---- any thread ---------------------------------------------------------

    def put(self, channel: str | None, payload: bytes) -> int:
        """Queue one publish; returns its index (0 when dropped: the queue is full)."""
        if len(self._items) >= self._max_pending:
            self.dropped += 1
            now = time.monotonic()
            if now - self._dropped_logged_at > DROP_LOG_EVERY:
                self._dropped_logged_at = now
                log.warning("backplane queue full (%d): %d publishes dropped so far",
                            self._max_pending, self.dropped)  # fmt: skip
            return 0
        with self._order:
            index = next(self._indexes)
            self._items.append((index, channel, payload))
            self.last_index = index
        self._thread_last.index = index
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake.set)
        return index

    def last_of_this_thread(self) -> int:
        """The index of the calling thread's last publish (0: none)."""
        return getattr(self._thread_last, "index", 0)

    @property
    def pending(self) -> int:
        return len(self._items)

    # ---- the loop -------------------------------------------------------------

    async def run(self) -> None:
        """Send what is queued, batch after batch, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._wake_pending = False
            while self._items:
                batch = [self._items.popleft() for _ in range(min(BATCH, len(self._items)))]
                await self._deliver(batch)

    async def _deliver(self, batch: list[Item]) -> None:
        """Send ``batch`` until Redis has applied it (backing off while it says "not now")."""
        delay = BACKOFF_FIRST
        while True:
            try:
                acks, rest, reason = await self._send(batch)
            except redis_errors.NoScriptError:
                self._sha = None  # the broker restarted and forgot the script: load it again
                continue
            except Exception as exc:
                if worth_retrying(exc):
                    acks, rest, reason = [], batch, repr(exc)
                else:
                    # A request Redis cannot take (or a reply we cannot read): the same
                    # again would fail again, and must not hold back every later batch.
                    self._fail(batch, exc)
                    acks, rest = [(index, channel, 0, None) for index, channel, _ in batch], []
            if acks:
                self.acked = acks[-1][0]
                if self._on_ack is not None:
                    self._on_ack(acks)
            if not rest:
                self.unreachable = False
                return
            batch = rest
            self.reconnects += 1
            self.unreachable = True
            log.warning("backplane: publishing failed (%s); retrying in %.2f s", reason, delay)
            # A new connection: after a failover the address may lead elsewhere now.
            await self._redis.connection_pool.disconnect(inuse_connections=False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _send(self, batch: list[Item]) -> tuple[list[Ack], list[Item], str]:
        """One script call for the whole batch: a round trip, not one per message.
        Returns the acks of what Redis applied or refused for good, the rest (from a
        "not now" on) to be sent again, and Redis's words for that "not now"."""
        if self._sha is None:
            self._sha = await self._redis.script_load(script.PUBLISH)
        args: list[bytes | str | int] = [self.publisher, self._maxlen, self._key_ttl_ms]
        for index, channel, payload in batch:
            args += (index, script.pubsub_key(channel), payload)
        results = await self._redis.evalsha(self._sha, 0, *args)
        acks: list[Ack] = []
        reason = ""
        for (index, channel, _), result in zip(batch, results, strict=False):  # short: "not now"
            if isinstance(result, bytes):  # Redis refused this one: its error
                if script.transient(result):
                    reason = result.decode(errors="replace")[:200]
                    break
                self.failed += 1
                self._log_refused(channel, result)
                acks.append((index, channel, 0, None))
            else:  # [seq, epoch]: the epoch is missing only if the stream has none
                seq, epoch = (*result, None)[:2]
                acks.append((index, channel, int(seq), epoch))
        return acks, batch[len(acks) :], reason

    def _fail(self, batch: list[Item], exc: Exception) -> None:
        self.failed += len(batch)
        if isinstance(exc, redis_errors.ResponseError):
            log.error("backplane: Redis refused %d publishes: %s", len(batch), exc)
        else:  # not the broker's doing: a payload it cannot take, a reply we cannot read
            log.exception("backplane: %d publishes could not be sent", len(batch))

    def _log_refused(self, channel: str | None, error: bytes) -> None:
        now = time.monotonic()
        if now - self._refused_logged_at > DROP_LOG_EVERY:
            self._refused_logged_at = now
            log.error("backplane: Redis refused a publish to %r: %s (%d refused so far)",
                      channel, error.decode(errors="replace")[:200], self.failed)  # fmt: skip

    async def drained(self, timeout: float) -> bool:
        """Wait until everything queued so far is applied (at most ``timeout`` s)."""
        target = self.last_index
        deadline = self._loop.time() + timeout
        while self.acked < target and self._loop.time() < deadline:
            await asyncio.sleep(0.005)
        return self.acked >= target
