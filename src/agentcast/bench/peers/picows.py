"""picows on uvloop, the straightforward way: one ``transport.send`` per client per message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import uvloop
from picows import WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from agentcast.bench.peers import HOST, tls_identity
from agentcast.bench.peers._agents import Watchers
from agentcast.bench.peers._loop import LoopServer


class _Registry(WSListener):
    """Keeps the set of open transports, and by agent watched; the clients never send
    anything that matters."""

    def __init__(self, clients: set[WSTransport], watchers: Watchers[WSTransport]) -> None:
        self.clients = clients
        self.watchers = watchers

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.clients.add(transport)
        self.watchers.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.clients.discard(transport)
        self.watchers.discard(transport)


class PicowsPeer:
    """``orjson.dumps`` once in the publisher thread, then a Python loop of sends on the loop.

    picows frames and writes each send itself, so a message costs one
    ``send`` (and one syscall) per client: the baseline that agentcast's
    Cython core and the pure-Python coalescing peer improve on. Many agents: a set
    of transports per agent (``Watchers``), and ``publish_to`` sends to that set.
    """

    def __init__(self, tls: int = 0) -> None:
        self._ssl, self.ca_pem = tls_identity(tls)
        self._loop = LoopServer(uvloop.new_event_loop, "picows-peer")
        self.clients: set[WSTransport] = set()
        self.watchers: Watchers[WSTransport] = Watchers()
        self._server: Any = None

    def start(self) -> int:
        return self._loop.start(self._serve)

    async def _serve(self) -> int:
        self._server = await ws_create_server(
            self._listener, HOST, 0, enable_auto_ping=False, ssl=self._ssl
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def _listener(self, _request: WSUpgradeRequest) -> _Registry:
        return _Registry(self.clients, self.watchers)

    def publish(self, obj: Any) -> None:
        self._loop.call_soon(self._send_all, orjson.dumps(obj))

    def _send_all(self, payload: bytes) -> None:
        self._send(self.clients, payload)

    def route(self, watched: Sequence[str]) -> None:
        self._loop.run(self._route(watched))

    async def _route(self, watched: Sequence[str]) -> None:
        self.watchers.route(watched)

    def publish_to(self, agent: str, obj: Any) -> None:
        self._loop.call_soon(self._send_to, agent, orjson.dumps(obj))

    def _send_to(self, agent: str, payload: bytes) -> None:
        self._send(self.watchers.of(agent), payload)

    @staticmethod
    def _send(transports: set[WSTransport], payload: bytes) -> None:
        for transport in transports:
            transport.send(WSMsgType.TEXT, payload)

    @property
    def client_count(self) -> int:
        return len(self.clients)

    def stop(self) -> None:
        self._loop.stop(self._close)

    async def _close(self) -> None:
        self._server.close()
        for transport in list(self.clients):
            transport.disconnect()
