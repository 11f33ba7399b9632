"""websockets' asyncio server, broadcasting the way its documentation recommends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from agentcast.loadgen.peers import HOST
from agentcast.loadgen.peers._loop import LoopServer


class WebsocketsPeer:
    """``json.dumps`` once, then ``websockets.broadcast`` to every connection on the loop.

    ``publish`` serializes compactly (the same bytes orjson would send) and
    hands the text to the loop with ``call_soon_threadsafe``. The loop is
    asyncio's own, as in websockets' documentation.
    """

    def __init__(self) -> None:
        self._loop = LoopServer(asyncio.new_event_loop, "websockets-peer")
        self._server: Server | None = None

    def start(self) -> int:
        return self._loop.start(self._serve)

    async def _serve(self) -> int:
        # Raw receivers offer no extensions; compression=None makes "no deflate" explicit.
        self._server = await serve(_hold_open, HOST, 0, ping_interval=None, compression=None)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def publish(self, obj: Any) -> None:
        self._loop.call_soon(self._broadcast, json.dumps(obj, separators=(",", ":")))

    def _broadcast(self, text: str) -> None:
        assert self._server is not None
        broadcast(self._server.connections, text)

    @property
    def client_count(self) -> int:
        """Counted on the loop thread: ``Server.connections`` walks a dict the loop mutates."""
        return self._loop.run(self._count())

    async def _count(self) -> int:
        assert self._server is not None
        return len(self._server.connections)

    def stop(self) -> None:
        self._loop.stop(self._close)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def _hold_open(connection: ServerConnection) -> None:
    """A broadcast-only client: keep its connection until it goes away."""
    await connection.wait_closed()
