"""Per-IP connection limits, decided at upgrade: open connections and new ones a second.

picows hands its listener factory the upgrade request and nothing of the socket, so
``create_server`` builds picows' own protocol (as ``picows.ws_create_server`` does, for
the pinned picows) with one addition: each connection counts itself against its peer's
address from accept to close, and its upgrade is refused first when that address is over
a limit. Every TCP connection counts, upgraded or not: one that never finishes its
handshake holds a socket and a buffer too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from ssl import SSLContext
from typing import Any

from picows import WSAutoPingStrategy, WSUpgradeRequest, WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as WithListener

from agentcast.bounded_reads import BoundedReadsProtocol
from agentcast.logs import ClientFaultLog

__all__ = ["ConnectionAdmission", "create_server"]

Peer = tuple[str, int] | None
ListenerFactory = Callable[[WSUpgradeRequest, Peer], Any]
"""Called with the upgrade request and the peer's (address, port)."""


def _refuse(status: HTTPStatus, body: bytes) -> WSUpgradeResponse:
    response: WSUpgradeResponse = WSUpgradeResponse.create_error_response(status, body + b"\n")
    return response


class ConnectionAdmission:
    """Open connections per IP address (beyond ``max_per_ip``: HTTP 503) and new
    connections per IP address a second (a token bucket refilled at ``max_rate`` a second,
    holding ``max_per_ip`` tokens, or ``max_rate`` without a cap: HTTP 429). An upgrade
    refused at the cap takes no token.

    What it keeps is bounded: a count per address with open connections, and a bucket per
    address that connected within the time a bucket takes to refill (a full bucket is the
    same as none, so it is forgotten). Loop thread only.
    """

    def __init__(
        self,
        max_per_ip: int | None,
        max_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_ip = max_per_ip
        self.max_rate = max_rate
        self._capacity = float(max_per_ip or max(1.0, max_rate))
        self._refill_time = self._capacity / max_rate if max_rate else 0.0
        self._clock = clock
        self._open: dict[str, int] = {}
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # oldest first
        self.refused_rate = 0
        self.refused_per_ip = 0
        self.refused_head_size = 0
        self.connections = 0

    def connected(self, ip: str) -> None:
        self._open[ip] = self._open.get(ip, 0) + 1
        self.connections += 1

    def disconnected(self, ip: str) -> None:
        self.connections -= 1
        left = self._open[ip] - 1
        if left:
            self._open[ip] = left
        else:
            del self._open[ip]

    def refusal(self, ip: str) -> WSUpgradeResponse | None:
        """The response refusing this upgrade from ``ip`` (counted), else None."""
        if self.max_per_ip is not None and self._open[ip] > self.max_per_ip:
            self.refused_per_ip += 1
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, b"too many connections from your IP")
        if self.max_rate and not self._take_token(ip):
            self.refused_rate += 1
            return _refuse(HTTPStatus.TOO_MANY_REQUESTS, b"too many new connections from your IP")
        return None

    def _take_token(self, ip: str) -> bool:
        now = self._clock()
        self._forget_full_buckets(now)
        tokens, since = self._buckets.pop(ip, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - since) * self.max_rate)
        taken = tokens >= 1.0
        self._buckets[ip] = (tokens - 1.0 if taken else tokens, now)
        return taken

    def _forget_full_buckets(self, now: float) -> None:
        while self._buckets:
            ip, (_, since) = next(iter(self._buckets.items()))
            if now - since < self._refill_time:
                return
            del self._buckets[ip]

    def stats(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "connection_ips": len(self._open),
            "connect_rate_ips": len(self._buckets),
            "connections_refused_rate": self.refused_rate,
            "connections_refused_per_ip": self.refused_per_ip,
            "upgrades_refused_head_size": self.refused_head_size,
        }


class _AdmittedProtocol(BoundedReadsProtocol):
    """picows' server protocol (reads bounded, an oversized head answered 431), counted
    against its peer's address while it is open."""

    __slots__ = ("_admission", "_ip", "_listener_factory_after_admission", "_peer")  # no __dict__

    def __init__(
        self, admission: ConnectionAdmission, listener_factory: ListenerFactory, *args: Any
    ) -> None:
        self._admission = admission
        self._listener_factory_after_admission = listener_factory
        self._ip: str | None = None
        self._peer: Peer = None
        super().__init__(None, None, False, self._upgrade, *args)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._ip = str(peer[0] if isinstance(peer, tuple) else peer)
        self._peer = (self._ip, int(peer[1])) if isinstance(peer, tuple) else None
        self._admission.connected(self._ip)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ip is not None:  # released first: it is free once the client is gone
            self._admission.disconnected(self._ip)
            self._ip = None
        super().connection_lost(exc)

    def head_too_large(self) -> None:
        self._admission.refused_head_size += 1

    def _upgrade(self, request: WSUpgradeRequest) -> Any:
        assert self._ip is not None
        refusal = self._admission.refusal(self._ip)
        if refusal is not None:
            return WithListener(refusal, None)
        return self._listener_factory_after_admission(request, self._peer)


async def create_server(
    admission: ConnectionAdmission,
    listener_factory: ListenerFactory,
    on_client_fault: Callable[[], None],
    host: str,
    port: int,
    *,
    websocket_handshake_timeout: float | None,
    enable_auto_ping: bool,
    auto_ping_idle_timeout: float,
    auto_ping_reply_timeout: float,
    enable_auto_pong: bool,
    max_frame_size: int,
    read_buffer_init_size: int,
    use_aiofastnet: bool,
    logger_name: str,
    reuse_port: bool | None,
    ssl: SSLContext | None,
) -> asyncio.Server:
    """``picows.ws_create_server`` with ``admission`` deciding each upgrade first; the
    protocol errors picows finds in clients' frames are logged at INFO, not ERROR, and
    reported to ``on_client_fault`` (see ``agentcast.logs``)."""
    loop = asyncio.get_running_loop()
    create: Callable[..., Awaitable[asyncio.Server]] = loop.create_server
    if use_aiofastnet:
        import aiofastnet

        create = partial(aiofastnet.create_server, loop)
    logger = ClientFaultLog(logging.getLogger(f"picows.{logger_name}"), on_client_fault)

    def protocol_factory() -> _AdmittedProtocol:
        return _AdmittedProtocol(
            admission,
            listener_factory,
            logger,
            True,  # disconnect on an exception from the listener
            websocket_handshake_timeout,
            enable_auto_ping,
            auto_ping_idle_timeout,
            auto_ping_reply_timeout,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            enable_auto_pong,
            max_frame_size,
            None,  # extra headers: a client's
            read_buffer_init_size,
        )

    server: asyncio.Server = await create(
        protocol_factory, host=host, port=port, reuse_port=reuse_port, ssl=ssl
    )
    return server
