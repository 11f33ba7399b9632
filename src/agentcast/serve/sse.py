"""Server-sent events on the WebSocket port: agent event streams for ``EventSource``, AG-UI
and AI SDK clients, and the AI SDK's resume endpoint.

- ``GET /sse/{channel}?protocol=agentcast|agui|aisdk|letta`` (default ``agentcast``):
  the channel's events, each with ``id: <seq>``, so a browser's ``EventSource`` resumes
  by itself with ``Last-Event-ID`` (or ``?since=N``); one that joins mid-run first gets
  the open run's snapshot, as a WebSocket client does. AG-UI's and the AI SDK's clients
  take a stream only from a run's start: a resume of theirs inside the open run gets the
  run again from its start (a new connection is a new reader: ``connectAgent``,
  ``reconnectToStream``).
- ``GET {api}/{chat_id}/stream`` (``api`` is ``/api/chat``): the AI SDK's
  ``useChat({resume: true})``. 204 when no run is open on the chat's channel, else the
  open run from its first chunk (from history, or its snapshot), then live until its
  ``data: [DONE]``, when the connection closes.

picows answers a plain GET with one response and closes; these requests are taken over
at the admission layer before picows reads them (``agentcast.serve.admission``), and
each connection becomes a client of the core with a sink of its own
(``agentcast._sink.StreamSink``): the core frames each event once per encoding, SSE or
WebSocket, and writes it with the same compiled round. The same gate decides as for a
WebSocket (``Origin``, the token as ``?token=`` or Bearer, ``max_clients``, and with
authentication ``may_read`` of the channel). What is not an event of the stream (the
subscription's ack, a notice) is an SSE comment, and so is the heartbeat. Messages
published as plain JSON (not agent events) do not go to SSE clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs, unquote

import orjson
from picows import WSUpgradeRequest, WSUpgradeResponse

from agentcast._ext import FanoutCore, MemorySink, StreamSink
from agentcast.memgpt.protocol import MAX_AGENT_ID_BYTES
from agentcast.printable import quote
from agentcast.serve.auth import Identity, Refused
from agentcast.serve.gate import Gate
from agentcast.serve.params import one_value
from agentcast.serve.refusals import HANDSHAKE, SERVER_FULL, Refusal, text_response
from agentcast.serve.server import set_notsent_lowat
from agentcast.serve.sessions import Sessions
from agentcast.streams.encodings import SSE_PROTOCOLS, encoding_id

__all__ = ["SSE_PREFIX", "SseEndpoints", "check_chat_api"]

log = logging.getLogger("agentcast.sse")

SSE_PREFIX: Final = "/sse/"
RESUME_SUFFIX: Final = "/stream"
DEFAULT_PROTOCOL: Final = "agentcast"
RUN_WHOLE: Final = frozenset({"agui", "aisdk"})
"""Protocols whose client takes a stream only from a run's start (AG-UI's verifier, the AI
SDK's reader): a resume inside the open run gets it from its start."""
DONE: Final = b"data: [DONE]\n\n"
HEARTBEAT: Final = b": ping\n\n"
NO_RUN: Final = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"

Subscribe = Callable[[int, Hashable, "int | None", "bytes | None"], None]


class SseEndpoints:
    """The SSE routes of one server and their connections (loop thread only)."""

    def __init__(
        self,
        core: FanoutCore,
        subscribe: Subscribe,
        after_pending: Callable[[Callable[[], object]], None],
        gate: Gate,
        sessions: Sessions | None,
        *,
        max_clients: int | None,
        heartbeat: float,
        close_grace: float,
        notsent_lowat: int | None,
        chat_api: str = "/api/chat",
    ) -> None:
        self._core = core
        self._subscribe = subscribe
        self._after_pending = after_pending
        self._gate = gate
        self._sessions = sessions
        self._max_clients = max_clients
        self._heartbeat = heartbeat
        self._close_grace = close_grace
        self._notsent_lowat = notsent_lowat
        self._api = check_chat_api(chat_api) + "/"
        self._prefixes = (f"GET {SSE_PREFIX}".encode(), f"GET {self._api}".encode())
        self.open_streams = 0
        self.streams = 0  # opened in all
        self.refused = 0

    # ---- at the admission layer, before picows reads the request --------------

    def wants(self, head: bytes) -> bool | None:
        """Whether a request starting with ``head`` is one of ours; None: not enough bytes
        to tell yet."""
        for prefix in self._prefixes:
            n = min(len(head), len(prefix))
            if head[:n] == prefix[:n]:
                if n == len(prefix):
                    return True
                return None
        return False

    def open(
        self,
        request: WSUpgradeRequest,
        peer: tuple[str, int] | None,
        transport: asyncio.Transport,
        release: Callable[[], None],
    ) -> None:
        """Answer ``request``: a refusal (then close), or the stream on ``transport``."""
        what = request.path[:64].decode("latin-1")
        self._answer(lambda: self._open(request, peer, transport, release), transport, what)

    def _answer(
        self,
        attempt: Callable[[], WSUpgradeResponse | bytes | None],
        transport: asyncio.Transport,
        what: str,
    ) -> None:
        """Write what ``attempt`` answers, a refusal or ``NO_RUN``, and close (a fault of
        ours: 500, logged); nothing when it opened the stream or will."""
        try:
            opened = attempt()
        except Exception:
            log.exception("SSE %s failed", what)
            opened = text_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        if isinstance(opened, bytes):
            transport.write(opened)
            transport.close()
        elif opened is not None:
            self.refused += 1
            opened.headers["Connection"] = "close"
            transport.write(bytes(opened.to_bytes()))
            transport.close()

    def _open(
        self,
        request: WSUpgradeRequest,
        peer: tuple[str, int] | None,
        transport: asyncio.Transport,
        release: Callable[[], None],
    ) -> WSUpgradeResponse | bytes | None:
        """None once the stream is open or on its way; else the answer (``NO_RUN``: nothing
        to resume)."""
        route = self._route(request)
        if isinstance(route, WSUpgradeResponse):
            return route
        channel, protocol, since, resume = route
        foreign = self._gate.refuse_origin(request)
        if foreign is not None:
            return foreign
        if self._max_clients is not None and self._core.client_count >= self._max_clients:
            return SERVER_FULL.response()
        try:
            identity = self._gate.identify(request, peer)
        except Refused as refused:
            return Gate.refusal(refused)
        if identity is not None and not identity.may_read(channel):
            return text_response(HTTPStatus.FORBIDDEN, f"may not read {quote(channel)}")
        origin = request.headers.get("Origin")
        stream = _Request(channel, protocol, since, resume, identity, transport, release, origin)
        needs_run = resume or (protocol in RUN_WHOLE and since is not None)
        if needs_run and not self._core.subscriber_count(channel):
            self._after_following(channel, stream)
            return None
        return self._start(stream)

    def _after_following(self, channel: str, stream: _Request) -> None:
        """Start ``stream`` once this node follows ``channel``: a backplane node that did not
        knows nothing of its open run until it has read the channel's retained window. A
        client of no connection (it takes nothing) subscribes meanwhile."""
        follower = self._core.add_client(MemorySink(keep=False))
        self._subscribe(follower, channel, None, None)

        def followed() -> None:
            if not stream.transport.is_closing():  # else the client is gone: nothing to do
                self._answer(lambda: self._start(stream), stream.transport, quote(channel))
            self._core.remove_client(follower)

        # Past the pending operations, the core still has to apply what they queued (the
        # window read): its next turn.
        loop = asyncio.get_running_loop()
        self._after_pending(lambda: loop.call_soon(followed))

    def _start(self, stream: _Request) -> bytes | None:
        """Open ``stream`` (None), or ``NO_RUN`` for a resume with no run open."""
        channel, protocol, since, transport = (
            stream.channel,
            stream.protocol,
            stream.since,
            stream.transport,
        )
        codec = self._core.codec
        assert codec is not None  # a Broadcaster's core always has one
        run_seq = codec.run_seq(channel)
        if stream.resume and not run_seq:
            return NO_RUN
        if stream.resume or (protocol in RUN_WHOLE and since is not None and since >= run_seq > 0):
            since = run_seq - 1
        encoding = encoding_id(protocol, sse=True)
        loop = asyncio.get_running_loop()
        set_notsent_lowat(transport, self._notsent_lowat)
        sink = StreamSink(transport, loop, self._close_grace, DONE if stream.resume else None)
        transport.write(_head(protocol, stream.origin))
        client_id = self._core.add_client(sink, encoding)
        connection = _Stream(self, client_id, stream.release, transport)
        transport.set_protocol(connection)
        if self._sessions is not None:
            self._sessions.open(client_id, stream.identity)
        self.open_streams += 1
        self.streams += 1
        ack = orjson.dumps({"type": "subscribed", "channel": channel})
        self._subscribe(client_id, channel, since, ack)
        if self._heartbeat:
            connection.beat_every(loop, self._heartbeat)
        return None

    def _route(
        self, request: WSUpgradeRequest
    ) -> tuple[str, str, int | None, bool] | WSUpgradeResponse:
        """(channel, protocol, since, is the resume endpoint), or the refusal."""
        if len(request.headers.getall("Host", ())) != 1:
            return _bad("exactly one Host header is required")
        path, _, query_text = request.path.decode("latin-1").partition("?")
        query = parse_qs(query_text)
        resume = path.startswith(self._api) and path.endswith(RESUME_SUFFIX)
        if resume:
            name = path[len(self._api) : -len(RESUME_SUFFIX)]
            protocol = "aisdk"
        elif path.startswith(SSE_PREFIX):
            name = path[len(SSE_PREFIX) :]
            protocol = one_value(query.get("protocol", ()), DEFAULT_PROTOCOL)
        else:
            return text_response(HTTPStatus.NOT_FOUND, "not found")
        try:
            channel = unquote(name, errors="strict")
        except UnicodeDecodeError:
            return _bad("a channel's name is UTF-8, percent-encoded")
        if not channel or "/" in channel:
            return text_response(HTTPStatus.NOT_FOUND, "no such stream: name one channel")
        if (
            len(channel) > MAX_AGENT_ID_BYTES
            or len(channel.encode()) > MAX_AGENT_ID_BYTES
            or not channel.isprintable()
        ):
            return _bad(
                f"a channel's name is at most {MAX_AGENT_ID_BYTES} bytes of printable characters"
            )
        if protocol not in SSE_PROTOCOLS:
            return _bad(f"unknown protocol {quote(protocol)}: one of {', '.join(SSE_PROTOCOLS)}")
        since_text = one_value(request.headers.getall("Last-Event-ID", ()), "") or one_value(
            query.get("since", ()), ""
        )
        if not since_text:
            return channel, protocol, None, resume
        # ASCII: str.isdigit takes "²" (int() refuses it) and Arabic-Indic digits (int() reads)
        if not (since_text.isascii() and since_text.isdigit()) or len(since_text) > 19:
            return _bad(f"Last-Event-ID or since must be a seq, not {quote(since_text)}")
        return channel, protocol, int(since_text), resume

    def closed(self, client_id: int) -> None:
        self.open_streams -= 1
        self._core.remove_client(client_id)
        if self._sessions is not None:
            self._sessions.close(client_id)

    def stats(self) -> dict[str, int]:
        return {
            "sse_streams": self.open_streams,
            "sse_opened": self.streams,
            "sse_refused": self.refused,
        }


@dataclass
class _Request:
    """A stream asked for and let in: what opening it takes."""

    channel: str
    protocol: str
    since: int | None
    resume: bool
    identity: Identity | None
    transport: asyncio.Transport
    release: Callable[[], None]
    origin: str | None


class _Stream(asyncio.Protocol):
    """One SSE connection once taken over: it only writes (the core, the heartbeat);
    what the client still sends is read and dropped."""

    def __init__(
        self,
        endpoints: SseEndpoints,
        client_id: int,
        release: Callable[[], None],
        transport: asyncio.Transport,
    ) -> None:
        self._endpoints = endpoints
        self._client_id = client_id
        self._release = release
        self._transport = transport
        self._timer: asyncio.TimerHandle | None = None

    def beat_every(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        """A comment every ``interval`` s: proxies and clients see the stream is alive."""
        self._timer = loop.call_later(interval, self._beat, loop, interval)

    def _beat(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        if not self._transport.is_closing():
            self._transport.write(HEARTBEAT)
            self.beat_every(loop, interval)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._release()
        self._endpoints.closed(self._client_id)


def check_chat_api(chat_api: str) -> str:
    """``chat_api`` without a trailing slash (the resume endpoint is ``{chat_api}/{id}/stream``);
    ``ValueError`` for one that is not an absolute path of its own."""
    path = chat_api.rstrip("/")
    if not path.startswith("/") or "?" in path or "#" in path or path + "/" == SSE_PREFIX:
        raise ValueError(f"chat_api must be a path such as /api/chat, not {chat_api!r}")
    return path


def _head(protocol: str, origin: str | None) -> bytes:
    """The response head of a stream: it has no length, and ends when the connection does."""
    lines = [
        "HTTP/1.1 200 OK",
        "Content-Type: text/event-stream; charset=utf-8",
        "Cache-Control: no-cache",
        "X-Accel-Buffering: no",
        "Connection: close",
    ]
    if protocol == "aisdk":
        lines.append("x-vercel-ai-ui-message-stream: v1")
    if origin is not None:  # an allowed page of another origin: the gate checked it
        lines += [f"Access-Control-Allow-Origin: {origin}", "Vary: Origin"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _bad(reason: str) -> WSUpgradeResponse:
    return Refusal(HTTPStatus.BAD_REQUEST, HANDSHAKE, reason).response()
