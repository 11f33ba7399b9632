"""The picows WebSocket server in front of the fan-out core."""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from agentcast._ext import ConnectionStats, FanoutCore, ServerListener
from agentcast.serve.acceptor import Acceptor
from agentcast.serve.admission import ConnectionAdmission, Peer, Takeover, create_server
from agentcast.serve.auth import Identity, Refused
from agentcast.serve.connect_log import ConnectLog
from agentcast.serve.flavors import wire_encoding
from agentcast.serve.gate import Gate
from agentcast.serve.handshake import is_plain_get, refuse_upgrade
from agentcast.serve.http import HttpEndpoints
from agentcast.serve.refusals import SERVER_FULL, Refusal, text_response
from agentcast.serve.sessions import Sessions
from agentcast.streams.encodings import MEMGPT

MessageHandler = Callable[[int, bytes], None]

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
# None: Linux's own, which grows to 4 MiB for a slow reader, so its token frames go out
# unmerged. 16 KiB (a slow reader's deltas wait in the server and merge) cost the keepers'
# p99 with 10 % laggards 1.71x against 1.08x, and 1.24x the server CPU per frame (tokens,
# 7 rounds: bench/RESULTS.md, "The defaults of notsent_lowat and lag_threshold, again").
DEFAULT_NOTSENT_LOWAT: int | None = None
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux's; Python 3.12 names it

log = logging.getLogger("agentcast.server")


@dataclass(frozen=True)
class ServerOptions:
    """Connection-level settings; the defaults suit a public server."""

    # picows' read buffer grows to the largest frame a connection received and never
    # shrinks (internal to picows): at 1 MiB, 40 idle clients that each once sent one held
    # 1.9 MB each. A MemGPT user message needs far less.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    handshake_timeout: float = 5.0
    close_grace: float = 2.0
    read_buffer_size: int = 2048
    reuse_port: bool = False  # SO_REUSEPORT: several processes serve one port
    # TCP_NOTSENT_LOWAT of an agent event stream's connection (not MemGPT's: its frames
    # never merge, and the kernel's slack keeps it clear of client_budget in a burst):
    # unsent bytes the kernel holds (None: Linux's own, up to 4 MiB for a slow reader).
    # Small, a slow reader's bytes wait in the server, where its token deltas merge.
    notsent_lowat: int | None = DEFAULT_NOTSENT_LOWAT
    max_clients: int | None = None
    max_message_rate: float = 100.0
    max_connections_per_ip: int | None = None
    max_connect_rate: float = 0.0
    # None picks per protocol. ws://: uvloop's own TCP transports, 9.1 KiB RSS per idle
    # client against 14.9 KiB with aiofastnet (picows' default) at 1,000 clients, same
    # burst rate within noise. wss://: aiofastnet's TLS, 0.87x uvloop's server CPU per
    # delivery in a 1,000-client burst at the same RSS per client (53.8 vs 52.7 KiB).
    transport: Literal["uvloop", "aiofastnet"] | None = None
    ssl: ssl_module.SSLContext | None = None  # wss://: each client gets its own TLS stream

    def __post_init__(self) -> None:
        if self.notsent_lowat is not None and self.notsent_lowat <= 0:
            raise ValueError("notsent_lowat must be positive (None: the kernel's default)")
        for name in ("max_message_size", "read_buffer_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("ping_interval", "ping_timeout", "handshake_timeout", "close_grace"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.transport is None:
            object.__setattr__(self, "transport", "uvloop" if self.ssl is None else "aiofastnet")
        if self.transport not in ("uvloop", "aiofastnet"):
            raise ValueError(f"transport must be 'uvloop' or 'aiofastnet', not {self.transport!r}")
        if self.max_message_rate < 0:
            raise ValueError("max_message_rate must be >= 0 (0: no limit)")
        for name in ("max_clients", "max_connections_per_ip"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_connect_rate < 0:
            raise ValueError("max_connect_rate must be >= 0 (0: no limit)")
        if self.ping_interval and self.ping_timeout > self.ping_interval:
            # picows refuses every connection otherwise (an assertion per connection).
            raise ValueError("ping_timeout must not exceed ping_interval")


ConnectHandler = Callable[[int], None]


class _HookedListener(ServerListener):
    """A listener that also records the client's identity (``sessions``), calls
    ``on_connect(client_id)`` once the client is registered, and sets an event stream's
    ``notsent_lowat`` (a separate class, so that connections with none of these pay
    nothing for them)."""

    _on_connect: ConnectHandler | None
    _sessions: Sessions | None
    _identity: Identity | None
    _notsent_lowat: int | None

    def on_ws_connected(self, transport: Any) -> None:
        set_notsent_lowat(transport.underlying_transport, self._notsent_lowat)
        super().on_ws_connected(transport)
        if self._sessions is not None:
            self._sessions.open(self.client_id, self._identity)
        if self._on_connect is None:
            return
        try:
            self._on_connect(self.client_id)
        except Exception:
            log.exception("client %d: on_connect failed", self.client_id)

    def on_ws_disconnected(self, transport: Any) -> None:
        super().on_ws_disconnected(transport)
        if self._sessions is not None:
            self._sessions.close(self.client_id)


async def start_server(
    core: FanoutCore,
    host: str,
    port: int,
    options: ServerOptions,
    on_message: MessageHandler | None,
    on_binary: MessageHandler | None,
    on_connect: ConnectHandler | None,
    gate: Gate,
    sessions: Sessions | None,
    admission: ConnectionAdmission,
    http: HttpEndpoints | None,
    connections: ConnectionStats,
    connect_log: ConnectLog,
    takeover: Takeover | None = None,
) -> Acceptor:
    """Listen on ``host:port``; every connection ``admission`` lets in and ``gate``
    admits becomes a client of ``core``, its identity kept in ``sessions``, how it ends
    counted in ``connections``, its connect and disconnect logged if ``connect_log``
    allows; plain GETs are answered by ``http``, and the requests ``takeover`` wants (SSE)
    by it."""

    def listener_factory(
        request: WSUpgradeRequest, peer: Peer
    ) -> ServerListener | WSUpgradeResponseWithListener:
        answered = None if http is None else http.answer(request, peer)
        if answered is not None:
            return WSUpgradeResponseWithListener(answered, None)
        refusal = refuse_upgrade(request)
        if refusal is not None:
            return WSUpgradeResponseWithListener(admission.refuse(refusal), None)
        if is_plain_get(request):  # not one of our paths, and no upgrade asked for
            return WSUpgradeResponseWithListener(
                text_response(HTTPStatus.NOT_FOUND, "not found"), None
            )
        chosen = wire_encoding(request)
        if isinstance(chosen, Refusal):
            return WSUpgradeResponseWithListener(admission.refuse(chosen), None)
        encoding, subprotocol = chosen
        foreign = gate.refuse_origin(request)
        if foreign is not None:
            return WSUpgradeResponseWithListener(foreign, None)
        if options.max_clients is not None and core.client_count >= options.max_clients:
            return WSUpgradeResponseWithListener(admission.refuse(SERVER_FULL), None)
        try:
            identity = gate.identify(request, peer)
        except Refused as refused:
            return WSUpgradeResponseWithListener(Gate.refusal(refused), None)
        settings = (
            core,
            connections,
            connect_log,
            on_message,
            on_binary,
            options.close_grace,
            options.max_message_size,
            options.max_message_rate,
            encoding,
        )
        lowat = None if encoding == MEMGPT else options.notsent_lowat
        if on_connect is None and sessions is None and lowat is None:
            listener = ServerListener(*settings)
        else:
            listener = _HookedListener(*settings)  # the compiled base takes no more arguments
            listener._on_connect = on_connect
            listener._sessions = sessions
            listener._identity = identity
            listener._notsent_lowat = lowat
        if subprotocol is None:
            return listener
        accepted = WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": subprotocol})
        return WSUpgradeResponseWithListener(accepted, listener)

    acceptor = await create_server(
        admission,
        listener_factory,
        connections.client_fault,
        host,
        port,
        handshake_timeout=options.handshake_timeout or None,
        enable_auto_ping=options.ping_interval > 0,
        auto_ping_idle_timeout=options.ping_interval or 20.0,
        auto_ping_reply_timeout=options.ping_timeout or 20.0,
        enable_auto_pong=False,  # the listener answers pings, after checking their RSV bits
        max_frame_size=options.max_message_size,
        read_buffer_init_size=options.read_buffer_size,
        use_aiofastnet=options.transport == "aiofastnet",
        logger_name="agentcast.picows",
        reuse_port=options.reuse_port,
        ssl=options.ssl,
        takeover=takeover,
    )
    return acceptor


def set_notsent_lowat(transport: Any, notsent_lowat: int | None) -> None:
    """Let the kernel hold at most ``notsent_lowat`` unsent bytes of this connection (an
    agent event stream's: what waits in the server merges)."""
    sock = transport.get_extra_info("socket")
    if notsent_lowat is not None and sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, notsent_lowat)
