"""One admission layer for every connection, from TCP accept to the upgrade.

At accept, before any TLS work, a connection counts against its peer (an IPv6 peer's /64)
and takes a connect-rate token. One over a limit is refused there: over TLS it is closed
at once (it could not be answered before a handshake); in plain text its request is
answered 503 or 429 when it comes. One deadline, ``handshake_timeout`` from accept,
covers the TLS handshake, the HTTP head and the upgrade. Every TCP connection counts,
upgraded or not, until it closes: one that never finishes its handshake holds a socket
and a buffer too.

picows hands its listener factory the upgrade request and nothing of the socket, so
``create_server`` builds picows' own protocol (as ``picows.ws_create_server`` does, for
the pinned picows) for each socket the acceptor (``agentcast.serve.acceptor``) lets in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from ssl import SSLContext
from typing import Any, Protocol

from picows import WSAutoPingStrategy, WSUpgradeRequest, WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as WithListener

from agentcast.serve.acceptor import Acceptor, listening_sockets
from agentcast.serve.bounded_reads import BoundedReadsProtocol
from agentcast.serve.logs import ClientFaultLog
from agentcast.serve.refusals import (
    CONNECT_RATE,
    HANDSHAKE,
    HEAD_TOO_LARGE,
    PER_IP,
    SERVER_FULL,
    Refusal,
    text_response,
)

__all__ = ["ConnectionAdmission", "Takeover", "create_server", "peer_key"]

Peer = tuple[str, int] | None
ListenerFactory = Callable[[WSUpgradeRequest, Peer], Any]
"""Called with the upgrade request and the peer's (address, port)."""


class Takeover(Protocol):
    """Requests answered on the connection itself, not by picows (the SSE routes)."""

    def wants(self, head: bytes) -> bool | None:
        """Whether a request whose head starts with ``head`` is one (None: can't tell yet)."""

    def open(
        self,
        request: WSUpgradeRequest,
        peer: Peer,
        transport: asyncio.Transport,
        release: Callable[[], None],
    ) -> None:
        """Answer ``request`` on ``transport``; ``release`` once the connection is closed
        if it takes the connection over (its protocol), else it closes the transport."""


IPV6_PREFIX = 64  # one subscriber's network: a client picks any address in it at will
_PREFIX_MASK = ((1 << IPV6_PREFIX) - 1) << (128 - IPV6_PREFIX)


def peer_key(address: str) -> str:
    """The address limits are kept under: an IPv4 address as it is, an IPv4-mapped IPv6
    one as its IPv4 address, another IPv6 address as its /64 (``2001:db8::/64``)."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return f"{ipaddress.IPv6Address(int(ip) & _PREFIX_MASK)}/{IPV6_PREFIX}"


class ConnectionAdmission:
    """Open connections per peer (beyond ``max_per_ip``: ``PER_IP``) and new connections
    per peer a second (a token bucket refilled at ``max_rate`` a second, holding
    ``max_per_ip`` tokens, or ``max_rate`` without a cap: ``CONNECT_RATE``). A connection
    refused at the cap takes no token. Peers are ``peer_key``s. The upgrades refused later
    (``agentcast.serve.handshake``'s checks, a full server) are counted here too (``refuse``):
    each refusal under its one counter.

    What it keeps is bounded: a count per peer with open connections, and a bucket per
    peer that connected within the time a bucket takes to refill (a full bucket is the
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
        counters = (PER_IP, CONNECT_RATE, SERVER_FULL, HEAD_TOO_LARGE)
        self._refused = dict.fromkeys([r.counter for r in counters] + [HANDSHAKE], 0)
        self.connections = 0

    def admit(self, peer: str) -> Refusal | None:
        """Count a new connection from ``peer`` as open; the refusal it gets (counted),
        or None. Either way ``release`` it once it is closed."""
        self._open[peer] = self._open.get(peer, 0) + 1
        self.connections += 1
        if self.max_per_ip is not None and self._open[peer] > self.max_per_ip:
            return self.count(PER_IP)
        if self.max_rate and not self._take_token(peer):
            return self.count(CONNECT_RATE)
        return None

    def refuse(self, refusal: Refusal) -> WSUpgradeResponse:
        """The answer to an upgrade refused after admission (the handshake's checks, a
        full server), counted."""
        return self.count(refusal).response()

    def count(self, refusal: Refusal) -> Refusal:
        """Count ``refusal`` (answered elsewhere: a 431 for an oversized head)."""
        self._refused[refusal.counter] += 1
        return refusal

    def release(self, peer: str) -> None:
        self.connections -= 1
        left = self._open[peer] - 1
        if left:
            self._open[peer] = left
        else:
            del self._open[peer]

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
            **self._refused,
        }


class _AdmittedProtocol(BoundedReadsProtocol):
    """picows' server protocol for an admitted socket (reads bounded, an oversized head
    answered 431): counted against its peer until it closes, refused at its upgrade if
    admission refused it, closed at its deadline unless upgraded by then."""

    __slots__ = (  # no __dict__
        "_admission",
        "_deadline",
        "_listener_factory_after_admission",
        "_peer",
        "_peer_key",
        "_refusal",
        "_takeover",
    )

    def __init__(
        self,
        admission: ConnectionAdmission,
        key: str,
        peer: Peer,
        refusal: Refusal | None,
        deadline: float | None,
        listener_factory: ListenerFactory,
        takeover: Takeover | None,
        *args: Any,
    ) -> None:
        self._admission = admission
        self._peer_key: str | None = key
        self._peer = peer
        self._refusal = refusal
        self._listener_factory_after_admission = listener_factory
        self._takeover = takeover
        super().__init__(None, None, False, self._upgrade, *args, taking=takeover is not None)
        self._deadline: asyncio.TimerHandle | None = None
        if deadline is not None:
            self._deadline = asyncio.get_running_loop().call_at(deadline, self._deadline_passed)

    def release(self) -> None:
        """Uncount it (once): it is closed, or it never became a connection."""
        self._cancel_deadline()
        if self._peer_key is not None:
            self._admission.release(self._peer_key)
            self._peer_key = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()  # first: its slot is free once the client is gone
        super().connection_lost(exc)

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport is not None:  # else still in its TLS handshake: TLS times it out
            self._handshake_timeout_callback()  # picows': fails the handshake, disconnects

    def refused(self, refusal: Refusal) -> None:
        self._admission.count(refusal)

    def takes(self, head: bytes) -> bool | None:
        assert self._takeover is not None
        return self._takeover.wants(head)

    def take(self, head: bytes, request: Any) -> None:
        self._cancel_deadline()
        transport = self.transport.underlying_transport
        if isinstance(request, RuntimeError) or self._refusal is not None:
            if isinstance(request, RuntimeError):
                answer = text_response(HTTPStatus.BAD_REQUEST, str(request))
            else:
                assert self._refusal is not None
                answer = self._refusal.response()
            answer.headers["Connection"] = "close"
            transport.write(bytes(answer.to_bytes()))
            transport.close()
            return
        assert self._takeover is not None
        self._takeover.open(request, self._peer, transport, self.release)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:  # answered now: the handshake is over, either way
            self._deadline.cancel()
            self._deadline = None

    def _upgrade(self, request: WSUpgradeRequest) -> Any:
        self._cancel_deadline()
        if self._refusal is not None:
            return WithListener(self._refusal.response(), None)
        return self._listener_factory_after_admission(request, self._peer)


async def create_server(
    admission: ConnectionAdmission,
    listener_factory: ListenerFactory,
    on_client_fault: Callable[[], None],
    host: str,
    port: int,
    *,
    handshake_timeout: float | None,
    enable_auto_ping: bool,
    auto_ping_idle_timeout: float,
    auto_ping_reply_timeout: float,
    enable_auto_pong: bool,
    max_frame_size: int,
    read_buffer_init_size: int,
    use_aiofastnet: bool,
    logger_name: str,
    reuse_port: bool,
    ssl: SSLContext | None,
    takeover: Takeover | None = None,
) -> Acceptor:
    """Serve ``listener_factory``'s WebSockets on ``host:port`` (as ``picows.ws_create_server``
    would) with ``admission`` deciding each TCP connection at accept, ``handshake_timeout``
    (None: none) from accept to upgrade; the protocol errors picows finds in clients' frames
    are logged at INFO, not ERROR, and reported to ``on_client_fault`` (see
    ``agentcast.serve.logs``). Requests ``takeover`` wants are answered by it instead of
    picows, after the same admission and deadline."""
    loop = asyncio.get_running_loop()
    connect: Callable[..., Any] = loop.connect_accepted_socket
    if use_aiofastnet:
        import aiofastnet

        connect = partial(aiofastnet.connect_accepted_socket, loop)
    tls: dict[str, Any] = {}
    if ssl is not None:
        tls = {"ssl": ssl, "ssl_handshake_timeout": handshake_timeout}
    logger = ClientFaultLog(logging.getLogger(f"picows.{logger_name}"), on_client_fault)

    def accept(sock: socket.socket, address: Any) -> None:
        peer = peer_key(address[0])
        refusal = admission.admit(peer)
        if refusal is not None and ssl is not None:  # no answer before TLS: closed, counted
            admission.release(peer)
            sock.close()
            return
        deadline = None if handshake_timeout is None else loop.time() + handshake_timeout
        protocol = _AdmittedProtocol(
            admission,
            peer,
            (address[0], int(address[1])),
            refusal,
            deadline,
            listener_factory,
            takeover,
            logger,
            True,  # disconnect on an exception from the listener
            None,  # picows' handshake timeout: the deadline above covers it
            enable_auto_ping,
            auto_ping_idle_timeout,
            auto_ping_reply_timeout,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            enable_auto_pong,
            max_frame_size,
            None,  # extra headers: a client's
            read_buffer_init_size,
        )
        acceptor.run(_connect(connect, sock, protocol, tls))

    acceptor = Acceptor(await listening_sockets(host, port, reuse_port), accept)
    return acceptor


async def _connect(
    connect: Callable[..., Any], sock: socket.socket, protocol: _AdmittedProtocol, tls: Any
) -> None:
    """``sock`` as ``protocol``'s transport (after its TLS handshake, with ``tls``)."""
    try:
        await connect(lambda: protocol, sock, **tls)
    except BaseException as exc:  # gone, or failed or timed out in TLS: transport closed
        protocol.release()
        if not isinstance(exc, Exception):
            raise
