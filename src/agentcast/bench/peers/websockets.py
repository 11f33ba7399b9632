"""websockets' asyncio server, broadcasting the way its documentation recommends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast

from agentcast.bench.peers import tls_identity
from agentcast.bench.peers._agents import Watchers
from agentcast.bench.peers._websockets_server import WebsocketsServer


class WebsocketsPeer:
    """``json.dumps`` once, then ``websockets.broadcast`` to every connection on the loop.

    ``publish`` serializes compactly (the same bytes orjson would send) and
    hands the text to the loop with ``call_soon_threadsafe``. The loop is
    asyncio's own, as in websockets' documentation. Many agents: the handler files each
    connection under the agent it watches (``Watchers``), and ``publish_to`` broadcasts
    to that agent's set.
    """

    def __init__(self, tls: int = 0) -> None:
        context, self.ca_pem = tls_identity(tls)
        self._websockets = WebsocketsServer(self._hold_open, "websockets-peer", context)
        self.watchers: Watchers[ServerConnection] = Watchers()

    async def _hold_open(self, connection: ServerConnection) -> None:
        """A broadcast-only client: keep its connection until it goes away."""
        self.watchers.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self.watchers.discard(connection)

    def start(self) -> int:
        return self._websockets.start()

    def publish(self, obj: Any) -> None:
        self._websockets.loop.call_soon(self._broadcast, json.dumps(obj, separators=(",", ":")))

    def _broadcast(self, text: str) -> None:
        broadcast(self._websockets.server.connections, text)

    def route(self, watched: Sequence[str]) -> None:
        self._websockets.loop.run(self._route(watched))

    async def _route(self, watched: Sequence[str]) -> None:
        self.watchers.route(watched)

    def publish_to(self, agent: str, obj: Any) -> None:
        self._websockets.loop.call_soon(
            self._broadcast_to, agent, json.dumps(obj, separators=(",", ":"))
        )

    def _broadcast_to(self, agent: str, text: str) -> None:
        broadcast(self.watchers.of(agent), text)

    @property
    def client_count(self) -> int:
        """Counted on the loop thread: ``Server.connections`` walks a dict the loop mutates.
        With a route, the connections filed under their agent (the handler runs after the
        connection is counted in ``Server.connections``)."""
        return self._websockets.loop.run(self._count())

    async def _count(self) -> int:
        if self.watchers.routed:
            return self.watchers.count
        return len(self._websockets.server.connections)

    def stop(self) -> None:
        self._websockets.stop()
