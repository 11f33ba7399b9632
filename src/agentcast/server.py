"""The picows WebSocket server in front of the fan-out core."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from picows import (
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from agentcast._ext import FanoutCore, ServerListener
from agentcast.handshake import refuse_upgrade

MessageHandler = Callable[[int, bytes], None]

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024

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
    max_clients: int | None = None
    max_message_rate: float = 100.0
    # uvloop's own TCP transports: 9.1 KiB RSS per idle client against 14.9 KiB with
    # aiofastnet (picows' default) at 1,000 clients, same burst rate within noise.
    transport: Literal["uvloop", "aiofastnet"] = "uvloop"

    def __post_init__(self) -> None:
        for name in ("max_message_size", "read_buffer_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("ping_interval", "ping_timeout", "handshake_timeout", "close_grace"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.transport not in ("uvloop", "aiofastnet"):
            raise ValueError(f"transport must be 'uvloop' or 'aiofastnet', not {self.transport!r}")
        if self.max_message_rate < 0:
            raise ValueError("max_message_rate must be >= 0 (0: no limit)")
        if self.max_clients is not None and self.max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        if self.ping_interval and self.ping_timeout > self.ping_interval:
            # picows refuses every connection otherwise (an assertion per connection).
            raise ValueError("ping_timeout must not exceed ping_interval")


ConnectHandler = Callable[[int], None]


class _AnnouncingListener(ServerListener):
    """A listener that also calls ``on_connect(client_id)`` once the client is registered
    (a separate class, so that servers without the callback pay nothing for it)."""

    _on_connect: ConnectHandler

    def on_ws_connected(self, transport: Any) -> None:
        super().on_ws_connected(transport)
        try:
            self._on_connect(self.client_id)
        except Exception:
            log.exception("client %d: on_connect failed", self.client_id)


async def start_server(
    core: FanoutCore,
    host: str,
    port: int,
    options: ServerOptions,
    on_message: MessageHandler | None,
    on_binary: MessageHandler | None,
    on_connect: ConnectHandler | None = None,
) -> asyncio.Server:
    """Listen on ``host:port``; every connection becomes a client of ``core``."""

    def listener_factory(
        request: WSUpgradeRequest,
    ) -> ServerListener | WSUpgradeResponseWithListener:
        refusal = refuse_upgrade(request)
        if refusal is not None:
            return WSUpgradeResponseWithListener(refusal, None)
        if options.max_clients is not None and core.client_count >= options.max_clients:
            response = WSUpgradeResponse.create_error_response(
                HTTPStatus.SERVICE_UNAVAILABLE, b"server full\n"
            )
            return WSUpgradeResponseWithListener(response, None)
        settings = (
            core,
            on_message,
            on_binary,
            options.close_grace,
            options.max_message_size,
            options.max_message_rate,
        )
        if on_connect is None:
            return ServerListener(*settings)
        listener = _AnnouncingListener(*settings)  # the compiled base takes no more arguments
        listener._on_connect = on_connect
        return listener

    return await ws_create_server(
        listener_factory,
        host,
        port,
        websocket_handshake_timeout=options.handshake_timeout or None,
        enable_auto_ping=options.ping_interval > 0,
        auto_ping_idle_timeout=options.ping_interval or 20.0,
        auto_ping_reply_timeout=options.ping_timeout or 20.0,
        enable_auto_pong=False,  # the listener answers pings, after checking their RSV bits
        max_frame_size=options.max_message_size,
        read_buffer_init_size=options.read_buffer_size,
        use_aiofastnet=options.transport == "aiofastnet",
        logger_name="agentcast.picows",
        reuse_port=options.reuse_port or None,
    )
