"""Watchers of one channel over WebSocket and SSE, in several encodings, in one process.

For ``bench/sse.py``: the same token stream (``token_script``) reaches groups of watchers
that differ only in transport (``ws``: picows clients; ``sse``: an ``asyncio.Protocol``
reading ``GET /sse/{channel}``) or in encoding (``?protocol=agentcast|agui``), and every
watcher checks what it assembles with the ``tokens`` workload's ``StreamCheck``: seq with no
gap or repeat, each delta's text continuing its message's text exactly, every boundary once.
An SSE watcher parses the stream as a browser does (``SseParser``) and also checks that
each event's ``id:`` is its seq. The process runs uvloop with one Python callback per read
(SSE) or per frame (WebSocket) and no coroutine per event; only 127.0.0.1 is dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, cast

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from agentcast.bench.histogram import Histogram
from agentcast.bench.token_watchers import (
    REPLY_GRACE,
    STARTUP_TIMEOUT,
    Expected,
    Stream,
    StreamCheck,
    WatcherProcess,
)

__all__ = ["GROUPS", "Group", "GroupOutcome", "SseParser", "StreamWatchers", "agui_view"]

HOST: Final = "127.0.0.1"
CONNECT_TIMEOUT: Final = 30.0  # seconds for one connection (a shared, busy machine is slow)
Event = dict[str, Any]


@dataclass(frozen=True)
class Group:
    """``count`` watchers speaking ``protocol`` over ``transport`` ("ws" or "sse")."""

    transport: str
    protocol: str
    count: int

    @property
    def name(self) -> str:
        return f"{self.transport}:{self.protocol}"


def agui_view(event: Event) -> Event:
    """An AG-UI event as ``StreamCheck`` reads a native one: seq (from ``metadata``), a
    ``TEXT_MESSAGE_CONTENT`` as a ``message_delta``, anything else as a boundary."""
    numbers = event["metadata"]["agentcast"]
    view: Event = {"seq": numbers["seq"], "type": event["type"]}
    if "fromSeq" in numbers:
        view["from_seq"] = numbers["fromSeq"]
    if event["type"] == "TEXT_MESSAGE_CONTENT":
        view.update(type="message_delta", message_id=event["messageId"], delta=event["delta"])
    return view


def _native_view(event: Event) -> Event:
    return event


VIEWS: Final[dict[str, Callable[[Event], Event]]] = {"agentcast": _native_view, "agui": agui_view}
GROUPS: Final = tuple(f"{t}:{p}" for t in ("ws", "sse") for p in VIEWS)


class SseParser:
    """``text/event-stream`` as the WHATWG parser reads it, after checking the response head:
    ``feed`` returns each complete event as (last event id, data), data lines joined by LF;
    comments are counted in ``comments`` and the last kept in ``last_comment``. Lines may end
    in LF, CRLF or CR."""

    def __init__(self) -> None:
        self._head: bytes | None = b""  # None once the head is read
        self._buffer = b""
        self._last_id = b""
        self.comments = 0
        self.last_comment = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        if self._head is not None:
            data = self._read_head(self._head + data)
        buffer = self._buffer + data
        if b"\r" in buffer:
            held = buffer.endswith(b"\r")  # maybe the first half of a CRLF
            buffer = buffer[:-1] if held else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        *blocks, self._buffer = buffer.split(b"\n\n")
        events = []
        for block in blocks:
            event = self._block(block)
            if event is not None:
                events.append(event)
        return events

    def _read_head(self, data: bytes) -> bytes:
        head, found, body = data.partition(b"\r\n\r\n")
        if not found:
            self._head = data
            return b""
        status, *headers = head.split(b"\r\n")
        if not status.startswith(b"HTTP/1.1 200 "):
            raise ValueError(f"not a stream: {status!r}")
        if not any(h.lower().startswith(b"content-type: text/event-stream") for h in headers):
            raise ValueError("not text/event-stream")
        self._head = None
        return body

    def _block(self, block: bytes) -> tuple[bytes, bytes] | None:
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b":"):
                self.comments += 1
                self.last_comment = line
                continue
            field, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"id" and b"\0" not in value:
                self._last_id = value
        return (self._last_id, b"\n".join(data)) if data else None


class _Watcher:
    """What both transports share: a view of the protocol, the check, the counts."""

    def __init__(self, group: Group, expected: Expected, timed: bool, fleet: _Fleet) -> None:
        self.group = group
        self.view = VIEWS[group.protocol]
        self.check = StreamCheck(expected, timed)
        self.fleet = fleet
        self.deliveries = 0
        self.closed = False  # by the server, or the connection dropped
        self.stopping = False  # we close it

    def deliver(self, payload: bytes | memoryview, now: float) -> int:
        """Check one event; returns its seq."""
        event = self.view(orjson.loads(payload))
        self.deliveries += 1
        if self.check.event(event, now):
            self.fleet.completed()
        seq: int = event["seq"]
        return seq

    def lost(self) -> None:
        if not self.stopping:
            self.closed = True
        self.fleet.completed()


class _WsWatcher(_Watcher, WSListener):
    transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.deliver(frame.get_payload_as_memoryview(), time.monotonic())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.lost()

    async def close(self) -> None:
        self.stopping = True
        if self.transport is not None:
            self.transport.disconnect()
            await self.transport.wait_disconnected()


class _SseWatcher(_Watcher, asyncio.Protocol):
    def __init__(self, group: Group, expected: Expected, timed: bool, fleet: _Fleet) -> None:
        super().__init__(group, expected, timed, fleet)
        self.parser = SseParser()
        self.request = b""
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.subscribed = loop.create_future()  # the server's ack comment arrived
        self.gone = loop.create_future()
        self.id_faults = 0  # events whose id: is not their seq

    def itself(self) -> _SseWatcher:
        """The protocol factory of its own connection."""
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        comments = self.parser.comments
        for event_id, payload in self.parser.feed(data):
            if self.deliver(payload, now) != int(event_id):
                self.id_faults += 1
        acked = self.parser.comments != comments and b'"subscribed"' in self.parser.last_comment
        if acked and not self.subscribed.done():
            self.subscribed.set_result(None)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("the stream ended before its ack"))
        self.gone.set_result(None)
        self.lost()

    async def close(self) -> None:
        self.stopping = True
        if self.transport is not None:
            self.transport.close()
        await self.gone


@dataclass(frozen=True)
class GroupOutcome:
    """What one group's watchers saw: sums over them, and their delta latencies."""

    watchers: int
    deliveries: int
    text_faults: int  # watchers whose text differs from what was produced, or is short
    seq_faults: int  # seq gaps, repeats, wrong boundaries, SSE ids that are not the seq
    incomplete: int  # watchers without the stream's last seq
    closes: int  # connections the server closed
    histogram: Histogram  # delta latencies, µs (timed segments only)

    @property
    def faults(self) -> int:
        return self.text_faults + self.seq_faults + self.incomplete + self.closes


class _Fleet:
    """The watchers of a child process and its answers to the parent's commands."""

    def __init__(self, port: int, control: Connection) -> None:
        self.port = port
        self.control = control
        self.watchers: list[_WsWatcher | _SseWatcher] = []
        self.waiting: asyncio.Future[None] | None = None
        self.cpu_mark, self.wall_mark = time.process_time(), time.monotonic()
        self.stopped = asyncio.get_running_loop().create_future()

    def completed(self) -> None:
        if self.waiting is not None and not self.waiting.done() and self._all_done():
            self.waiting.set_result(None)

    def _all_done(self) -> bool:
        return all(w.check.complete or w.closed for w in self.watchers)

    def on_command(self) -> None:
        command, *args = self.control.recv()
        handlers: dict[str, Callable[..., Any]] = {
            "connect": lambda *a: asyncio.ensure_future(self._connect(*a)),
            "await": lambda deadline: asyncio.ensure_future(self._await(deadline)),
            "report": self._report,
            "close": lambda: asyncio.ensure_future(self._close()),
            "stop": lambda: asyncio.ensure_future(self._stop()),
        }
        handlers[command](*args)

    async def _connect(
        self, channel: str, groups: list[Group], stream: Stream, timed: bool
    ) -> None:
        expected = Expected(channel, stream)
        loop = asyncio.get_running_loop()
        try:
            for group in _interleaved(groups):
                if group.transport == "ws":
                    ws_watcher = _WsWatcher(group, expected, timed, self)
                    await ws_connect(
                        lambda w=ws_watcher: w,
                        f"ws://{HOST}:{self.port}/?protocol={group.protocol}",
                        websocket_handshake_timeout=CONNECT_TIMEOUT,
                        use_aiofastnet=False,  # uvloop's transports, as the SSE watchers'
                    )
                    self.watchers.append(ws_watcher)
                else:
                    sse_watcher = _SseWatcher(group, expected, timed, self)
                    sse_watcher.request = _sse_request(self.port, channel, group.protocol)
                    await asyncio.wait_for(
                        loop.create_connection(sse_watcher.itself, HOST, self.port),
                        CONNECT_TIMEOUT,
                    )
                    self.watchers.append(sse_watcher)
            for watcher in self.watchers:
                if isinstance(watcher, _SseWatcher):
                    await asyncio.wait_for(watcher.subscribed, CONNECT_TIMEOUT)
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            self.control.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        self.cpu_mark, self.wall_mark = time.process_time(), time.monotonic()
        self.control.send(("connected", len(self.watchers)))

    async def _await(self, deadline: float) -> None:
        self.waiting = asyncio.get_running_loop().create_future()
        self.completed()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.waiting, max(0.0, deadline - time.monotonic()))
        self.waiting = None
        busy = (time.process_time() - self.cpu_mark) / max(time.monotonic() - self.wall_mark, 1e-9)
        self.control.send(("done", self._all_done(), busy))

    def _report(self, published: bytes) -> None:
        """Per group: its ``GroupOutcome``'s fields, the histogram as bytes."""
        times = array("d", published)
        outcomes: dict[str, dict[str, Any]] = {}
        for w in self.watchers:
            into = outcomes.setdefault(
                w.group.name,
                {"watchers": 0, "deliveries": 0, "text_faults": 0, "seq_faults": 0,
                 "incomplete": 0, "closes": 0, "histogram": Histogram()},
            )  # fmt: skip
            into["watchers"] += 1
            into["deliveries"] += w.deliveries
            into["text_faults"] += not w.check.text_complete()
            into["seq_faults"] += w.check.stream_faults() + getattr(w, "id_faults", 0)
            into["incomplete"] += not w.check.complete
            into["closes"] += w.closed
            if w.check.timed:
                w.check.latencies(times, into["histogram"])
        for into in outcomes.values():
            into["histogram"] = into["histogram"].counts.tobytes()
        self.control.send(("report", outcomes))

    async def _close(self) -> None:
        watchers, self.watchers = self.watchers, []
        await asyncio.gather(*(w.close() for w in watchers))
        self.control.send(("closed",))

    async def _stop(self) -> None:
        await asyncio.gather(*(w.close() for w in self.watchers))
        self.stopped.set_result(None)


def _interleaved(groups: list[Group]) -> list[Group]:
    """One slot per watcher, the groups taking turns: the core writes to its clients in
    the order they came, so no group is always written first."""
    slots = []
    for index in range(max((g.count for g in groups), default=0)):
        slots += [g for g in groups if index < g.count]
    return slots


def _sse_request(port: int, channel: str, protocol: str) -> bytes:
    return (
        f"GET /sse/{channel}?protocol={protocol} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()


class StreamWatchers:
    """The parent's handle on the watcher process: connect groups to a channel, wait for
    the stream's end, report, close; then the next channel."""

    def __init__(self, port: int, cpu: int | None) -> None:
        self._child = WatcherProcess(port, cpu, _Fleet, "stream-watchers")
        try:
            self._child.reply(STARTUP_TIMEOUT)
        except BaseException:
            self._child.stop()
            raise

    def connect(self, channel: str, groups: list[Group], stream: Stream, timed: bool) -> None:
        """Open every group's connections to ``channel``; return once each is subscribed (an
        SSE watcher has its ack; a WebSocket watcher is subscribed by the server's route)."""
        self._child.send("connect", channel, groups, stream, timed)
        self._child.reply(STARTUP_TIMEOUT + CONNECT_TIMEOUT * sum(g.count for g in groups))

    def wait(self, deadline: float) -> tuple[bool, float]:
        """Until every watcher has the stream's last seq or was closed (True), or
        ``deadline``; and the watcher process's CPU time over wall time since connected."""
        self._child.send("await", deadline)
        _, done, busy = self._child.reply(deadline - time.monotonic() + REPLY_GRACE)
        return done, busy

    def report(self, published: bytes) -> dict[str, GroupOutcome]:
        """Each group's outcome, given the events' publish times (``array("d")`` bytes)."""
        self._child.send("report", published)
        _, outcomes = self._child.reply(REPLY_GRACE)
        return {
            name: GroupOutcome(**{**fields, "histogram": Histogram(counts=fields["histogram"])})
            for name, fields in outcomes.items()
        }

    def close(self) -> None:
        """Close every connection (and forget them)."""
        self._child.send("close")
        self._child.reply(REPLY_GRACE)

    def stop(self) -> None:
        self._child.stop()
