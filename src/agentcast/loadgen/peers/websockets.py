"""websockets' asyncio server, broadcasting the way its documentation recommends."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast

from agentcast.loadgen.peers import tls_identity
from agentcast.loadgen.peers._websockets_server import WebsocketsServer


class WebsocketsPeer:
    """``json.dumps`` once, then ``websockets.broadcast`` to every connection on the loop.

    ``publish`` serializes compactly (the same bytes orjson would send) and
    hands the text to the loop with ``call_soon_threadsafe``. The loop is
    asyncio's own, as in websockets' documentation.
    """

    def __init__(self, tls: int = 0) -> None:
        context, self.ca_pem = tls_identity(tls)
        self._websockets = WebsocketsServer(_hold_open, "websockets-peer", context)

    def start(self) -> int:
        return self._websockets.start()

    def publish(self, obj: Any) -> None:
        self._websockets.loop.call_soon(self._broadcast, json.dumps(obj, separators=(",", ":")))

    def _broadcast(self, text: str) -> None:
        broadcast(self._websockets.server.connections, text)

    @property
    def client_count(self) -> int:
        """Counted on the loop thread: ``Server.connections`` walks a dict the loop mutates."""
        return self._websockets.loop.run(self._count())

    async def _count(self) -> int:
        return len(self._websockets.server.connections)

    def stop(self) -> None:
        self._websockets.stop()


async def _hold_open(connection: ServerConnection) -> None:
    """A broadcast-only client: keep its connection until it goes away."""
    await connection.wait_closed()
