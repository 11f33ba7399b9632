"""``agentcast.Client``: watch agents' event streams over agentcast's native protocol,
across reconnects, with nothing lost and nothing twice.

::

    async with Client("ws://127.0.0.1:8282/", channel="demo") as client:
        await client.send("hello")
        async for event in client:
            print(event["type"], client.messages.get(event.get("message_id", "")))

What the iteration yields: the stream's events (dicts with ``type``, ``channel``, ``seq``
and the event's fields), each once, in order. A UI renders from them, or from the
assembled view (``messages``, ``tool_calls``, ``runs``), which is exactly the sum of the
events yielded so far: the client reads the socket only while it is iterated, so the view
never runs ahead of the event in hand, and a slow reader is merged for by the server
instead of queued for here.

The server's notices about the stream (``server_error`` frames: ``history_trimmed``,
``backplane_gap``, ``skipped``, ...; and ``error`` frames) are acted on here and kept in
``notices``; with ``notices=True`` they are yielded too, in stream order, for a UI that
shows "some of this run was lost". ``channel_restarted`` and ``history_trimmed`` restart
the channel's count: what follows is numbered anew, or the open run restated by a
snapshot. ``skipped`` (the server's slow-client policy left some out) is resumed on a new
connection, so the skipped events come, in order.

A dropped connection is dialled again with exponential backoff and full jitter, and every
channel resubscribed with ``since`` = the last seq seen, so the replay starts where the
stream stopped; an event that comes again anyway is dropped (its seq is not above the
last). A close with 1000 ends the iteration; an upgrade refused for good (401, 403, ...)
raises ``UpgradeRefused`` at once, since trying again cannot help. ``on_status`` is told of
every connection made and every one that failed or dropped, as it happens: a UI says
"reconnecting" while its user waits, not at the next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode

from agentcast import notices as codes
from agentcast.client.failures import unfixable
from agentcast.client.urls import check_url
from agentcast.client.view import KEEP, StreamView, ToolCall

__all__ = [
    "NOTICES_KEPT",
    "CannotConnect",
    "Client",
    "ClientError",
    "ConnectionLost",
    "ConnectionStatus",
    "UpgradeRefused",
    "backoff_delay",
]

NOTICES_KEPT: Final = 100
"""The newest notices kept in ``Client.notices``."""
MAX_FRAME: Final = 16 * 2**20
"""The largest frame read: a snapshot's merged delta carries a whole message so far."""
CLOSE_TIMEOUT: Final = 1.0
NOTICE_TYPES: Final = frozenset({"server_error", "error"})
T = TypeVar("T")
log = logging.getLogger("agentcast.client")


class ClientError(Exception):
    """The client cannot go on (or was used after ``close()``)."""


class UpgradeRefused(ClientError):
    """The server refused the WebSocket upgrade for good (a 4xx answer, not 429)."""

    def __init__(self, message: str, status: int, refusal: str) -> None:
        super().__init__(message)
        self.status = status
        self.refusal = refusal  # the message without its hint


class ConnectionLost(ClientError):
    """The connection failed and no retry is left (``reconnect=False``, ``max_retries``)."""


class CannotConnect(ConnectionLost):
    """``fail_fast``: the first connection failed in a way no retry can fix."""


@dataclass(frozen=True)
class ConnectionStatus:
    """What ``Client(on_status=...)`` is told when its connection changes."""

    connected: bool
    """True: a connection was made and every channel subscribed; False: an attempt failed,
    or the connection dropped."""
    connections: int
    """Connections made so far (1 once the first is made)."""
    failures: int
    """Failed attempts in a row, the drop that began them counted."""
    reason: str = ""
    """Why it failed ("" when connected)."""
    error: BaseException | None = None
    """The exception behind the failure, if one (``ConnectionRefusedError``, ...)."""


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry ``attempt`` (0 first): uniform in [0, min(cap, base·2^n)].

    Full jitter: after a server restart its watchers come back spread over the window,
    not all at once."""
    return rand() * min(cap, base * 2.0 ** min(attempt, 64))


class _Closed(Exception):
    """``close()`` was called while the client waited."""


class Client:
    """Watch ``channel`` (one name or several) at ``url``: an async context manager and
    async iterator of events, with the assembled view of what they say.

    ``token``: a JWT, sent as ``Authorization: Bearer``. ``since``: resume after this seq
    (one int for every channel, or channel -> seq); None joins live, with a snapshot of the
    open run. ``reconnect``: dial again when the connection is lost; ``backoff``: (first,
    longest) window of the jittered delay in seconds; ``max_retries``: failed attempts in a
    row before ``ConnectionLost`` (None: never give up). ``notices``: yield the server's
    notices too. ``keep``: messages and tool calls kept in the view (oldest go first).
    ``on_status``: called on the event loop with a ``ConnectionStatus`` at each connection
    made and each failure (before ``ConnectionLost`` is raised for the last); it must not
    block. ``fail_fast``: if the first connection fails in a way no retry can fix (nothing
    listening, a certificate not trusted or not for this address, the other of ws:// and
    wss://), raise ``CannotConnect`` at once, saying why in ``agentcast client``'s words;
    once connected, retries go on as configured.

    One task iterates; others may ``send``, ``subscribe`` and ``unsubscribe`` meanwhile.
    Reconnects happen while the client is iterated.
    """

    def __init__(
        self,
        url: str,
        channel: str | Iterable[str],
        *,
        token: str | None = None,
        since: int | Mapping[str, int] | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        max_retries: int | None = None,
        notices: bool = False,
        keep: int = KEEP,
        tls: ssl.SSLContext | None = None,
        on_status: Callable[[ConnectionStatus], object] | None = None,
        fail_fast: bool = False,
    ) -> None:
        check_url(url)
        channels = _channels(channel)
        first, longest = backoff
        if not 0 <= first <= longest or longest <= 0:
            raise ValueError(
                f"backoff must be (first, longest) with 0 <= first <= longest, "
                f"longest > 0; not {backoff!r}"
            )
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must be None or at least 0, not {max_retries}")
        self.url = url
        self.shown = url.partition("?")[0]  # never a query's secret in an error or a log
        self._channels = dict.fromkeys(channels)  # ordered set
        self.view = StreamView(_since(since, channels), keep)
        self.reconnect = reconnect
        self.backoff = (float(first), float(longest))
        self.max_retries = max_retries
        self.yield_notices = notices
        self.notices: deque[dict[str, Any]] = deque(maxlen=NOTICES_KEPT)
        self.connections = 0
        """Connections made so far: above 1 after a reconnect."""
        self.on_status = on_status
        self.fail_fast = fail_fast
        self._options: dict[str, Any] = {"close_timeout": CLOSE_TIMEOUT, "max_size": MAX_FRAME}
        self._token = token is not None
        if token is not None:
            self._options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        if tls is not None:  # no ssl=None for wss://: that would turn TLS off
            self._options["ssl"] = tls
        self._websocket: ClientConnection | None = None
        self._failures = 0  # attempts in a row that failed, the drop that began them counted
        self._closing = asyncio.Event()
        self._change = asyncio.Event()  # set (and replaced) when the connection changes

    # The assembled view: the sum of the events yielded so far.
    @property
    def messages(self) -> dict[str, str]:
        """message_id -> its text so far (a whole ``message`` sets it)."""
        return self.view.messages

    @property
    def tool_calls(self) -> dict[str, ToolCall]:
        """tool_call_id -> its name, its arguments so far and its result (None until then)."""
        return self.view.tool_calls

    @property
    def runs(self) -> dict[str, dict[str, Any] | None]:
        """channel -> its open run (the ``run_start`` event), None once it ended."""
        return self.view.runs

    @property
    def last_seq(self) -> dict[str, int]:
        """channel -> the last seq seen: what a resume asks for after."""
        return self.view.last_seq

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._channels)

    @property
    def connected(self) -> bool:
        return self._websocket is not None

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    async def __aenter__(self) -> Client:
        """Connect and subscribe (retrying as configured): ``UpgradeRefused`` or
        ``ConnectionLost`` here rather than at the first event."""
        try:
            await self._link()
        except _Closed:
            raise ClientError("the client was closed while connecting") from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The next new event (or notice, with ``notices=True``), reconnecting as needed."""
        while True:
            try:
                websocket = await self._link()
            except _Closed:
                raise StopAsyncIteration from None
            try:
                data = await websocket.recv()
            except ConnectionClosed as exc:
                if self._ended(websocket, exc):
                    raise StopAsyncIteration from None
                continue
            self._failures = 0
            item = await self._receive(websocket, data)
            if item is not None:
                return item

    async def send(self, message: str, channel: str | None = None) -> None:
        """Send ``message`` to the agent of ``channel`` (the only channel if None).

        Sent once: on the connection that is up, or, while it is down, on the next one
        (the iteration makes it). A message that reached a connection which then dropped
        is not sent again: the agent may have it, and would answer twice."""
        if channel is None:
            if len(self._channels) != 1:
                raise ValueError(f"send to which channel? this client watches {self.channels}")
            channel = next(iter(self._channels))
        if not isinstance(message, str):
            raise TypeError(f"message must be str, not {type(message).__name__}")
        data = _dumps({"type": "user_message", "agent_id": channel, "message": message})
        while True:
            if self.closed:
                raise ClientError("the client is closed")
            websocket = self._websocket
            if websocket is not None:
                try:
                    await websocket.send(data)
                    return
                except ConnectionClosed:
                    pass  # not written: wait for the next connection
            if self._websocket is websocket:
                await self._change.wait()

    async def subscribe(self, channel: str, since: int | None = None) -> None:
        """Watch ``channel`` too (resuming after ``since`` if given), now and after every
        reconnect."""
        (channel,) = _channels(channel)
        if since is not None:
            self.view.last_seq[channel] = _seq(since)
        self._channels[channel] = None
        await self._send_if_connected(self._subscribe_frame(channel))

    async def unsubscribe(self, channel: str) -> None:
        """Stop watching ``channel``; its events already on the way may still come."""
        self._channels.pop(channel, None)
        await self._send_if_connected(_dumps({"type": "unsubscribe", "channel": channel}))

    async def close(self) -> None:
        """Close the connection (1000) and end the iteration. Idempotent."""
        self._end()
        websocket, self._websocket = self._websocket, None
        if websocket is not None:
            await websocket.close()

    async def _link(self) -> ClientConnection:
        """The open connection: a new one (subscribed to every channel) if there is none,
        after a jittered delay if the last attempt failed."""
        while True:
            if self.closed:
                raise _Closed
            if self._websocket is not None:
                return self._websocket
            if self._failures:
                delay = backoff_delay(self._failures - 1, *self.backoff)
                log.info("reconnecting to %s in %.2f s", self.shown, delay)
                await self._unless_closed(asyncio.sleep(delay))
            try:
                websocket = await self._unless_closed(connect(_native(self.url), **self._options))
            except InvalidStatus as exc:
                self._fail(self._refused(exc), exc)
                continue
            except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
                if self.fail_fast and self.connections == 0:
                    reason = await unfixable(self.url, exc)
                    if reason is not None:
                        self._end()
                        raise CannotConnect(f"cannot connect to {self.shown}: {reason}") from exc
                self._fail(str(exc) or type(exc).__name__, exc)
                continue
            try:
                if self.closed:
                    raise _Closed
                for channel in self._channels:
                    await websocket.send(self._subscribe_frame(channel))
            except ConnectionClosed as exc:
                self._fail(_why(exc), exc)
                continue
            except _Closed:
                await websocket.close()
                raise
            self.connections += 1
            self._websocket = websocket
            self._changed()
            self._tell(ConnectionStatus(True, self.connections, self._failures))

    def _ended(self, websocket: ClientConnection, exc: ConnectionClosed) -> bool:
        """After ``websocket`` closed: True if the stream is over (``close()``, or the
        server closed it with 1000); else the failure is counted and the next read
        reconnects (``ConnectionLost`` if no retry is left)."""
        if self._websocket is websocket:
            self._websocket = None
            self._changed()
        if self.closed:
            return True
        if exc.rcvd is not None and exc.rcvd.code == CloseCode.NORMAL_CLOSURE:
            log.info("%s closed the stream: %s", self.shown, exc.rcvd)
            self._end()
            return True
        self._fail(_why(exc), exc)
        return False

    def _fail(self, failure: str, error: BaseException | None = None) -> None:
        self._failures += 1
        self._tell(ConnectionStatus(False, self.connections, self._failures, failure, error))
        retries = self.max_retries if self.reconnect else 0
        if retries is not None and self._failures > retries:
            self._end()
            raise ConnectionLost(
                f"{self.shown}: {failure}"
                + (f" ({self._failures} attempts in a row failed)" if self._failures > 1 else "")
            )
        log.info("%s: %s", self.shown, failure)

    def _tell(self, status: ConnectionStatus) -> None:
        if self.on_status is not None:
            self.on_status(status)

    def _refused(self, exc: InvalidStatus) -> str:
        """What an HTTP answer to the upgrade says; raises ``UpgradeRefused`` if final
        (429 and 5xx may pass later)."""
        response = exc.response
        status = response.status_code
        because = response.body.decode("utf-8", "replace").strip().splitlines()[:1] or [""]
        failure = f"HTTP {status} {response.reason_phrase}"
        if because[0]:
            failure += f" ({because[0][:200]})"
        if 400 <= status < 500 and status != HTTPStatus.TOO_MANY_REQUESTS:
            hint = ""
            if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                hint = (
                    ": check the token"
                    if self._token
                    else (": the server wants a token (Client(..., token=...))")
                )
            self._end()
            refusal = f"{self.shown} refused the connection: {failure}"
            raise UpgradeRefused(refusal + hint, status, refusal)
        return failure

    async def _receive(
        self, websocket: ClientConnection, data: str | bytes
    ) -> dict[str, Any] | None:
        """What ``data`` gives the iteration: a new event, a notice (if yielded), or None."""
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict):
            log.warning("not a JSON object from %s, skipped: %r", self.shown, data[:80])
            return None
        kind = frame.get("type")
        if _is_event(frame):
            return frame if self.view.accept(frame) else None
        if kind == "subscribed":
            return None
        await self._notice(websocket, frame)
        return frame if self.yield_notices else None

    async def _notice(self, websocket: ClientConnection, frame: dict[str, Any]) -> None:
        """Keep a notice, and act on what it says about the stream."""
        self.notices.append(frame)
        code = frame.get("code")
        channel = _channel_of(frame)
        if code in (codes.CHANNEL_RESTARTED, codes.HISTORY_TRIMMED) and channel in self._channels:
            self.view.restart(channel)  # what follows is numbered anew, or a snapshot
        elif code == codes.SKIPPED and self._channels.keys() & _skipped_channels(frame):
            # The notice comes before the live tail: a new connection resuming after the
            # last seq seen gets what was skipped, then the tail, in order (a resubscribe
            # on this one would get the skipped part after the tail).
            await self._drop(websocket)

    async def _drop(self, websocket: ClientConnection) -> None:
        """Leave ``websocket`` (not a failure): the next read connects again at once."""
        if self._websocket is websocket:
            self._websocket = None
            self._changed()
        await websocket.close()

    def _subscribe_frame(self, channel: str) -> str:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        since = self.view.since(channel)
        if since is not None:
            frame["since"] = since
        return _dumps(frame)

    async def _send_if_connected(self, data: str) -> None:
        """Send a subscription change now if connected; a reconnect sends the whole set."""
        if self._websocket is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._websocket.send(data)

    async def _unless_closed(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, or ``_Closed`` (and it cancelled) once ``close()`` is
        called: a close never waits out a backoff or a handshake."""
        task = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((task, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            task.cancel()  # nothing if it is done
            await asyncio.wait((task,))
        if task.cancelled():
            raise _Closed
        return task.result()

    def _end(self) -> None:
        """No more connections: the iteration ends, ``send`` raises."""
        self._closing.set()
        self._changed()

    def _changed(self) -> None:
        """Wake whoever waits for the connection to change (``send``)."""
        self._change.set()
        self._change = asyncio.Event()


def _native(url: str) -> str:
    """``url`` asking for the native protocol (``?protocol=agentcast``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "protocol"]
    query.append(("protocol", "agentcast"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _channels(channel: str | Iterable[str]) -> list[str]:
    """The channel names given, checked: non-empty strings, at least one."""
    names = [channel] if isinstance(channel, str) else list(channel)
    if not names:
        raise ValueError("watch at least one channel")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a channel is a non-empty string, not {name!r}")
    return names


def _seq(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"since is a seq (an int >= 0), not {value!r}")
    return value


def _since(since: int | Mapping[str, int] | None, channels: list[str]) -> dict[str, int]:
    if since is None:
        return {}
    if isinstance(since, Mapping):
        return {_channels(name)[0]: _seq(seq) for name, seq in since.items()}
    return dict.fromkeys(channels, _seq(since))


def _is_event(frame: dict[str, Any]) -> bool:
    """A stream event: it names its channel and seq (a notice names neither)."""
    seq = frame.get("seq")
    return (
        frame.get("type") not in NOTICE_TYPES
        and isinstance(frame.get("channel"), str)
        and isinstance(seq, int)
        and not isinstance(seq, bool)
    )


def _channel_of(frame: dict[str, Any]) -> Any:
    """The channel a notice is about (``agent_id`` in the MemGPT-era notices)."""
    return frame.get("channel", frame.get("agent_id"))


def _skipped_channels(frame: dict[str, Any]) -> set[Any]:
    """The channels a ``skipped`` notice names in its ``ranges``."""
    ranges = frame.get("ranges")
    if not isinstance(ranges, list):
        return set()
    return {_channel_of(r) for r in ranges if isinstance(r, dict)}


def _why(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "the connection dropped"
    return f"the server closed the connection ({exc.rcvd})"


def _dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()
