"""A node's side of the Redis backplane: subscribe, sync, catch up, keep local order.

A publish leaves through the ``Outbox`` and comes back, numbered, on pub/sub;
the node hands each channel's frames to the core with ``accept`` (which drops
a seq it has seen). A channel is *synced* before its first local subscriber
is added: the node subscribes on pub/sub, waits for Redis to confirm, then
reads the retained window from the stream, so history and live messages meet
with no gap. The same sync runs for every channel after the pub/sub
connection comes back, from the last seq delivered; and for one channel when
a live message skips a seq. What the stream no longer has, the core announces
to the subscribers as a ``backplane_gap``; a channel whose counter restarted
(new epoch: the broker lost its data) is restarted in the core, with a
``channel_restarted`` notice (see ``agentcast.notices``).

Broadcasts are one more stream, the channel ``None``, on the same path: the
node follows it from the moment it starts (no replay of older ones), catches
up on it after a reconnect, and tells every client with a ``broadcasts_lost``
notice (``"agent_id": null``) where broadcasts were lost.

Every key in Redis expires (``script.key_ttl_ms``: twice ``channel_ttl``); the
node renews those of the streams it follows, so a quiet channel with clients
here is not forgotten, and leaves a channel its clients left to Redis.

What is not ours (a stray ``redis-cli PUBLISH``, a key of another type, a
version mismatch) is skipped, counted as ``backplane_bad_messages`` and logged
once per kind; a background task that dies anyway is logged and started again.

Local operations keep the caller's order against its publishes: a direct
send waits until the publishes its thread made before it are applied and, on
channels this node delivers, delivered; a subscribe waits for its channel's
sync. They run from one FIFO on the loop thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentcast import notices
from agentcast.backplane import script
from agentcast.backplane.outbox import BACKOFF_FIRST, BACKOFF_MAX, Ack, Outbox

log = logging.getLogger("agentcast.backplane")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 1.0  # seconds a pub/sub read waits before looking at the node's own state
SWEEP_INTERVAL = 1.0  # seconds between looks for channels with no local subscriber left
REFRESHER = "agentcast-backplane-refresh"  # the task stop() lets end by itself
NO_BINARY = "{} is not available with a backplane: binary frames are not carried through Redis"
BROKER_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


@dataclass
class _Channel:
    """What the node knows of one channel it delivers."""

    epoch: bytes | None = None
    last_seq: int = 0  # the last seq handed to the core
    live: bool = False  # False: not synced; live messages wait in ``held``
    syncing: bool = False
    again: bool = False  # sync once more when the running one ends
    held: list[tuple[bytes, int, bytes]] = field(default_factory=list)
    stale: bool = False  # the last sync left held frames of another epoch
    idle_sweeps: int = 0

    def delivered(self, seq: int, epoch: bytes | None) -> bool:
        """Whether a publish Redis numbered ``seq`` in ``epoch`` has reached the core: this
        epoch's numbering got that far, or a later epoch started (what the earlier one still
        owed never comes). A seq of an epoch this node has not seen yet is not delivered,
        however far the old numbering got."""
        if epoch is None or self.epoch is None or epoch == self.epoch:
            # No epoch known here yet (a new or restarted channel counts from 0): its count
            # says it, and an ack never waits on an epoch this node may not learn.
            return self.last_seq >= seq
        return _later(self.epoch, epoch)


def _later(epoch: bytes, other: bytes) -> bool:
    """Epochs are Redis TIME in microseconds, decimal: longer is later, then by bytes."""
    return (len(epoch), epoch) > (len(other), other)


@dataclass
class _Send:
    client_id: int
    payload: bytes
    after: int  # outbox index that must be settled first


@dataclass
class _Subscribe:
    client_id: int
    channel: str
    since: int | None
    ack: bytes | None


@dataclass
class _Unsubscribe:
    client_id: int
    channel: str


@dataclass
class _Call:
    function: Callable[[], object]


_LocalOp = _Send | _Subscribe | _Unsubscribe | _Call


async def reach(client: Any, url: str) -> None:
    """Ping ``client``; if Redis does not answer, close it and raise ``ConnectionError``."""
    try:
        await asyncio.wait_for(client.ping(), CONNECT_TIMEOUT)
    except (*BROKER_ERRORS, asyncio.TimeoutError) as exc:
        await client.aclose()
        raise ConnectionError(f"cannot reach Redis at {url}: {exc}") from None
    except BaseException:
        await client.aclose()
        raise


def check_reachable(url: str) -> None:
    """Raise ``ConnectionError`` unless Redis at ``url`` answers a ping: what each node's
    start would find, told once by the parent of ``--workers`` before it starts any."""

    async def ping() -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)
        await reach(client, url)
        await client.aclose()

    asyncio.run(ping())


class RedisBackplane:
    """Connects a ``FanoutCore`` to the other nodes through Redis; lives on the core's loop."""

    def __init__(
        self,
        url: str,
        core: Any,
        *,
        history_size: int,
        channel_ttl: float | None = script.DEFAULT_CHANNEL_TTL,
        max_pending: int = 100_000,
        default: Callable[[Any], Any] | None = None,
    ) -> None:
        self.url = url
        self._key_ttl_ms = script.key_ttl_ms(channel_ttl)
        self._refresh_interval = script.refresh_interval(channel_ttl)
        self._core = core
        self._default = default
        self._history_size = max(1, history_size)
        self._max_pending = max_pending
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: Any = None
        self.outbox: Outbox | None = None
        self._channels: dict[str | None, _Channel] = {}  # None: the broadcasts
        self._local: collections.deque[_LocalOp] = collections.deque()
        self._unsettled: collections.deque[Ack] = collections.deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()  # set by stop(): the refresher ends
        self._helpers: set[asyncio.Task[None]] = set()  # syncs and late subscribes
        self._pubsub: Any = None
        self.resyncs = 0
        self.reconnects = 0
        self.local_dropped = 0
        self.broadcast_gaps = 0
        self.bad_messages = 0
        self.task_restarts = 0
        self._bad_kinds_logged: set[str] = set()

    # ---- lifecycle (loop thread) ---------------------------------------------

    async def start(self) -> None:
        """Connect (raising here if Redis cannot be reached), then run in the background."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=CONNECT_TIMEOUT, health_check_interval=0
        )
        await reach(self._redis, self.url)
        # Broadcasts are delivered from here on: whatever is numbered after this read
        # is caught up from the stream once pub/sub is subscribed.
        epoch, seq = await self._redis.hmget(script.meta_key(None), "epoch", "seq")
        self._channels[None] = _Channel(epoch=epoch, last_seq=int(seq or 0))
        self.outbox = Outbox(
            self._redis,
            loop,
            history_size=self._history_size,
            key_ttl_ms=self._key_ttl_ms,
            max_pending=self._max_pending,
            on_ack=self._on_ack,
        )
        self._stopping = asyncio.Event()
        runs = {"publish": self.outbox.run, "read": self._read, "sweep": self._sweep,
                "refresh": self._refresh}  # fmt: skip
        self._tasks = [
            loop.create_task(self._keep_running(run), name=f"agentcast-backplane-{name}")
            for name, run in runs.items()
        ]

    async def stop(self, timeout: float) -> None:
        """Send what is queued and deliver it here (at most ``timeout`` s), then disconnect."""
        assert self._loop is not None
        deadline = self._loop.time() + timeout
        if self.outbox is not None and not await self.outbox.drained(timeout):
            log.warning("backplane: %d publishes not sent at shutdown", self.outbox.pending)
        while self._local and self._loop.time() < deadline:
            await asyncio.sleep(0.005)
        self._stopping.set()  # the refresher ends between two rounds, never inside one
        tasks = [*self._tasks, *self._helpers]
        for task in tasks:
            if task.get_name() != REFRESHER:
                task.cancel()
        # A task cancelled inside a redis-py command can wait on that command's connection;
        # none may hold the shutdown past its deadline.
        _, stuck = await asyncio.wait(tasks, timeout=max(0.5, deadline - self._loop.time()))
        for task in stuck:
            log.warning("backplane: %s did not end at shutdown", task.get_name())
            task.cancel()
        self._tasks = []
        if self._pubsub is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    # ---- any thread: the Router shape (agentcast.serve.router) ---------------------------

    def publish(self, obj: Any, channel: object = None) -> None:
        self.publish_json(orjson.dumps(obj, default=self._default), channel)

    def send(self, client_id: int, obj: Any) -> None:
        self.send_json(client_id, orjson.dumps(obj, default=self._default))

    def publish_json(self, payload: bytes, channel: object = None) -> None:
        name = None if channel is None else script.channel_name(channel)
        assert self.outbox is not None, "start() first"
        self.outbox.put(name, payload)

    def send_json(self, client_id: int, payload: bytes) -> None:
        assert self.outbox is not None and self._loop is not None, "start() first"
        op = _Send(client_id, payload, self.outbox.last_of_this_thread())
        self._loop.call_soon_threadsafe(self._add_local, op)

    def publish_event(self, event: dict[str, Any], channel: object) -> None:
        """Through Redis as its native JSON: every node decodes it back into the event."""
        self.publish_json(orjson.dumps(event), channel)

    def send_control(self, client_id: int, payload: bytes) -> None:
        """Straight to the core: a control frame waits for no publish."""
        assert self._core is not None, "start() first"
        self._core.send_control(client_id, payload)

    def publish_binary(self, data: bytes, channel: object = None) -> None:
        raise NotImplementedError(NO_BINARY.format("publish_binary"))

    def send_binary(self, client_id: int, data: bytes) -> None:
        """Refused too: sent past the outbox it could overtake the sends queued before it."""
        raise NotImplementedError(NO_BINARY.format("send_binary"))

    def subscribe(
        self, client_id: int, channel: object, since: int | None = None, ack: bytes | None = None
    ) -> None:
        if since is not None and since < 0:
            raise ValueError("since must be >= 0")
        op = _Subscribe(client_id, script.channel_name(channel), since, ack)
        assert self._loop is not None, "start() first"
        self._loop.call_soon_threadsafe(self._add_local, op)

    def unsubscribe(self, client_id: int, channel: object) -> None:
        op = _Unsubscribe(client_id, script.channel_name(channel))
        assert self._loop is not None, "start() first"
        self._loop.call_soon_threadsafe(self._add_local, op)

    def after_pending(self, function: Callable[[], object]) -> None:
        """Call ``function`` on the loop once the local operations queued before it ran."""
        assert self._loop is not None, "start() first"
        self._loop.call_soon_threadsafe(self._add_local, _Call(function))

    def stats(self) -> dict[str, int]:
        outbox = self.outbox
        return {
            "backplane_pending": outbox.pending if outbox else 0,
            "backplane_acked": outbox.acked if outbox else 0,
            "backplane_dropped": outbox.dropped if outbox else 0,
            "backplane_failed": outbox.failed if outbox else 0,
            "backplane_sends_dropped": self.local_dropped,
            "backplane_publish_retries": outbox.reconnects if outbox else 0,
            "backplane_reconnects": self.reconnects,
            "backplane_resyncs": self.resyncs,
            "backplane_channels": len(self._channels) - (None in self._channels),
            "backplane_broadcast_gaps": self.broadcast_gaps,
            "backplane_bad_messages": self.bad_messages,
            "backplane_task_restarts": self.task_restarts,
        }

    def unready(self) -> str | None:
        """Not ready while the pub/sub connection to Redis is down (other nodes' messages
        would not arrive), or while the publisher cannot reach Redis (this node's publishes
        wait in its queue)."""
        if self._pubsub is None:
            return "redis unreachable"
        if self.outbox is not None and self.outbox.unreachable:
            return "redis unreachable for publishing"
        return None

    # ---- faults (loop thread) ----------------------------------------------------

    async def _keep_running(self, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` until cancelled; if it dies of anything else, log and start it again
        (the reader resubscribes and resyncs every channel when it starts)."""
        delay = BACKOFF_FIRST
        while True:
            try:
                await run()
                return
            except Exception:
                self.task_restarts += 1
                log.exception("backplane: a task failed; starting it again in %.2f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a short-lived task of the node's (cancelled by ``stop``)."""
        assert self._loop is not None
        task = self._loop.create_task(work)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _bad_data(self, kind: str, where: object, exc: Exception, count: int = 1) -> None:
        """Skip ``count`` messages that are not ours; log the first of each ``kind`` (a
        fixed few)."""
        self.bad_messages += count
        if kind not in self._bad_kinds_logged:
            self._bad_kinds_logged.add(kind)
            log.warning("backplane: skipping a bad %s on %r (%r); more are only counted "
                        "(backplane_bad_messages)", kind, where, exc)  # fmt: skip

    # ---- local order (loop thread) ---------------------------------------------

    def _add_local(self, op: _LocalOp) -> None:
        if isinstance(op, _Send) and len(self._local) >= self._max_pending:
            self.local_dropped += 1  # Redis has been away long enough to fill the queue
            if self.local_dropped == 1 or self.local_dropped % 1000 == 0:
                log.warning("backplane: %d direct sends dropped while Redis is away",
                            self.local_dropped)  # fmt: skip
            return
        if isinstance(op, _Subscribe) and op.channel not in self._channels:
            self._channels[op.channel] = _Channel()
            self._listen(op.channel)
        self._local.append(op)
        self._pump()

    def _pump(self) -> None:
        """Run the local operations whose turn has come, in order."""
        settled = self._settled_upto()
        while self._local:
            op = self._local[0]
            if isinstance(op, _Send):
                if op.after > settled:
                    return
                self._core.send_json(op.client_id, op.payload)
            elif isinstance(op, _Subscribe):
                state = self._channels.get(op.channel)
                if state is None:  # swept meanwhile: sync it again
                    self._channels[op.channel] = _Channel()
                    self._listen(op.channel)
                    return
                if not state.live:
                    return
                state.idle_sweeps = 0
                self._core.subscribe(op.client_id, op.channel, op.since, op.ack)
            elif isinstance(op, _Unsubscribe):
                self._core.unsubscribe(op.client_id, op.channel)
            else:
                try:
                    op.function()
                except Exception:
                    log.exception("backplane: a call after pending operations failed")
            self._local.popleft()

    def _on_ack(self, acks: list[Ack]) -> None:
        self._unsettled.extend(acks)
        self._pump()

    def _settled_upto(self) -> int:
        """Every publish up to this outbox index is applied and, where it matters, delivered."""
        unsettled = self._unsettled
        while unsettled:
            _, channel, seq, epoch = unsettled[0]
            state = self._channels.get(channel)
            if state is not None and not state.delivered(seq, epoch):
                break
            unsettled.popleft()
        if unsettled:
            return unsettled[0][0] - 1
        return self.outbox.acked if self.outbox is not None else 0

    # ---- pub/sub (loop thread) ---------------------------------------------------

    def _listen(self, channel: str | None) -> None:
        """Subscribe on pub/sub; the sync starts when Redis confirms."""
        if self._pubsub is not None:
            self._spawn(self._subscribe_quietly(script.pubsub_key(channel)))

    async def _subscribe_quietly(self, key: bytes) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reader subscribes to every channel when it is back
        with contextlib.suppress(*BROKER_ERRORS):  # the reader reconnects and subscribes again
            await pubsub.subscribe(key)

    async def _read(self) -> None:
        """Read pub/sub forever; on a lost connection reconnect with backoff and resync."""
        delay = BACKOFF_FIRST
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # a drop must surface here: it means catching up
            health_check_interval=0,
        )
        try:
            while True:
                try:
                    await self._subscribe_all(client)
                    delay = BACKOFF_FIRST
                    while True:
                        message = await self._pubsub.get_message(timeout=READ_TIMEOUT)
                        if message is None:
                            continue
                        try:
                            self._on_pubsub(message)
                        except Exception as exc:  # not an announcement of ours
                            self._bad_data("pub/sub message", message.get("channel"), exc)
                except BROKER_ERRORS as exc:
                    self.reconnects += 1
                    log.warning("backplane: pub/sub lost (%s); reconnecting in %.2f s", exc, delay)
                    await self._drop_pubsub()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
        finally:
            await self._drop_pubsub()
            await client.aclose()

    async def _subscribe_all(self, client: Any) -> None:
        """A fresh pub/sub connection with every channel; each resyncs when confirmed."""
        pubsub = client.pubsub()
        for state in self._channels.values():
            state.live = False
        channels = list(self._channels)
        await pubsub.subscribe(*(script.pubsub_key(c) for c in channels))
        self._pubsub = pubsub
        added = [c for c in self._channels if c not in channels]  # during the await
        if added:
            await pubsub.subscribe(*(script.pubsub_key(c) for c in added))

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await pubsub.aclose()

    def _on_pubsub(self, message: dict[str, Any]) -> None:
        kind, key, data = message["type"], message["channel"], message["data"]
        channel = script.channel_of(key)
        if kind == "subscribe":
            self._start_sync(channel)
        elif kind == "message":
            epoch, first, payloads = script.split_announcement(data)
            self._on_frames(channel, epoch, first, payloads)

    def _on_frames(
        self, channel: str | None, epoch: bytes, first: int, payloads: list[bytes]
    ) -> None:
        """Consecutive frames of ``channel`` numbered from ``first``, as announced."""
        state = self._channels.get(channel)
        if state is None:
            return  # unsubscribed meanwhile
        numbered = [(epoch, first + i, payload) for i, payload in enumerate(payloads)]
        if not state.live:
            state.held += numbered
            return
        if state.epoch is None and first == state.last_seq + 1:
            state.epoch = epoch  # the first numbering this node sees after an empty stream
        if epoch != state.epoch or first > state.last_seq + 1:
            # A new epoch (the broker lost its data) or a missed seq: read the stream first.
            state.held += numbered
            self._start_sync(channel)
            return
        frames = [(seq, payload) for _, seq, payload in numbered if seq > state.last_seq]
        if not frames:
            return
        self._hand_over(channel, state, frames)
        if self._unsettled:
            self._pump()

    def _hand_over(self, channel: str | None, state: _Channel, frames: list[Any]) -> None:
        """Give the core ``frames`` (seq order, each newer than ``state.last_seq``)."""
        if channel is not None:
            self._core.accept(channel, frames)  # it tells the subscribers of any gap
        else:
            first = frames[0][0]
            if first > state.last_seq + 1:
                self.broadcast_gaps += 1
                log.warning("backplane: broadcasts %d..%d lost", state.last_seq + 1, first - 1)
                self._core.publish_json(notices.broadcasts_lost(state.last_seq, first), None)
            for _, payload in frames:
                self._core.publish_json(payload, None)
        state.last_seq = frames[-1][0]

    def _restart(self, channel: str | None, state: _Channel) -> None:
        """The broker lost ``channel``'s numbering: tell its clients, forget what waits on it."""
        log.warning("backplane: %r lost its numbering at the broker", channel)
        if channel is not None:
            self._core.renumber(channel)
        else:
            self.broadcast_gaps += 1
            self._core.publish_json(notices.broadcasts_lost(state.last_seq, 0), None)
        state.epoch, state.last_seq = None, 0
        # Acks of the old numbering would wait for seqs this node may never see again.
        self._unsettled = collections.deque(
            (index, c, 0, None) if c == channel else (index, c, seq, epoch)
            for index, c, seq, epoch in self._unsettled
        )

    # ---- sync (loop thread) ------------------------------------------------------

    def _start_sync(self, channel: str | None) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        state.live = False
        if state.syncing:
            state.again = True  # the running sync may have read too early: read again after it
            return
        state.syncing = True
        self._spawn(self._sync(channel, state))

    async def _sync(self, channel: str | None, state: _Channel) -> None:
        """``_catch_up``; if that fails of anything but the broker, log and sync again."""
        try:
            await self._catch_up(channel, state)
        except Exception:
            self.task_restarts += 1
            log.exception("backplane: sync %r failed; again in %.2f s", channel, BACKOFF_MAX)
            await asyncio.sleep(BACKOFF_MAX)
            state.syncing = False
            self._start_sync(channel)

    async def _catch_up(self, channel: str | None, state: _Channel) -> None:
        """Bring ``channel`` up to date from the stream, then let its held frames through."""
        self.resyncs += 1
        delay = BACKOFF_FIRST
        while True:
            try:
                epoch, entries = await self._read_stream(channel, state.last_seq)
                if state.epoch is not None and epoch != state.epoch:
                    # No epoch: the broker lost the channel; another: it numbers from 1 again.
                    self._restart(channel, state)
                    epoch, entries = await self._read_stream(channel, 0)
                break
            except BROKER_ERRORS as exc:
                if self._channels.get(channel) is not state:
                    state.syncing = False
                    return
                log.warning("backplane: sync %r failed (%s); again in %.2f s", channel, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            except redis_errors.ResponseError as exc:  # e.g. WRONGTYPE: a key that is not ours
                # Nothing to catch up from: go live with what is held (a gap is announced).
                self._bad_data("stream", channel, exc)
                epoch, entries = (state.held[0][0] if state.held else state.epoch), []
                break
        state.syncing = False
        if self._channels.get(channel) is not state:
            return  # swept meanwhile
        state.epoch = epoch
        frames = [(seq, payload) for seq, payload in entries if seq > state.last_seq]
        last = frames[-1][0] if frames else state.last_seq
        later = []
        for held_epoch, seq, payload in state.held:
            if held_epoch != epoch:
                later.append((held_epoch, seq, payload))  # numbered after this read
            elif seq > last:
                frames.append((seq, payload))
                last = seq
        if later and state.stale:  # twice of an epoch the stream does not have: not ours
            error = ValueError(f"epoch {later[0][0]!r}")
            self._bad_data("announcement", channel, error, count=len(later))
            later = []
        state.held, state.stale = later, bool(later)
        if frames:
            self._hand_over(channel, state, frames)
        if later or state.again:
            state.again = False
            self._start_sync(channel)
            return
        state.live = True
        self._pump()

    async def _read_stream(self, channel: str | None, after: int) -> tuple[bytes | None, list[Any]]:
        """The channel's epoch and its kept entries with seq > ``after`` (all kept if 0)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(script.meta_key(channel), "epoch")
        if after:
            pipe.xrange(script.log_key(channel), min=f"{after + 1}-0")
        else:
            pipe.xrevrange(script.log_key(channel), count=self._history_size)
        epoch, raw = await pipe.execute()
        if not after:
            raw.reverse()
        entries = []
        for entry_id, fields in raw:
            try:
                entries.append((int(entry_id.split(b"-", 1)[0]), fields[b"d"]))
            except (KeyError, ValueError) as exc:  # an entry someone else added
                self._bad_data("stream entry", channel, exc)
        return epoch, entries

    # ---- housekeeping ---------------------------------------------------------------

    async def _sweep(self) -> None:
        """Stop listening to channels that have had no local subscriber for a while."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            waiting = {op.channel for op in self._local if isinstance(op, _Subscribe)}
            for channel, state in list(self._channels.items()):
                if channel is None:
                    continue  # every client hears the broadcasts
                if channel in waiting or self._core.subscriber_count(channel):
                    state.idle_sweeps = 0
                    continue
                state.idle_sweeps += 1
                if state.idle_sweeps >= 2 and self._pubsub is not None:
                    del self._channels[channel]
                    self._core.forget(channel)  # no one here reads it; Redis keeps it
                    with contextlib.suppress(*BROKER_ERRORS):
                        await self._pubsub.unsubscribe(script.pubsub_key(channel))

    async def _refresh(self) -> None:
        """Keep the keys of the streams this node follows from expiring: a channel with
        clients here may be quiet for longer than their TTL (``script.key_ttl_ms``)."""
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self._refresh_interval)
                return  # stop(): not cancelled, which could catch it inside a command
            except TimeoutError:
                pass
            pipe = self._redis.pipeline(transaction=False)
            for channel in self._channels:
                pipe.pexpire(script.meta_key(channel), self._key_ttl_ms)
                pipe.pexpire(script.log_key(channel), self._key_ttl_ms)
            # A refresh missed (Redis away, a replica) is made up by the next: the TTL
            # spans several.
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await pipe.execute()
