"""websockets' asyncio server on asyncio's own loop in a thread: how both websockets peers run.

They differ only in how they track clients and publish; starting (port 0, no
pings, no compression: raw receivers offer no extensions, ``wss://`` with a server
context) and stopping are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from ssl import SSLContext

from websockets.asyncio.server import Server, ServerConnection, serve

from agentcast.bench.peers import HOST
from agentcast.bench.peers._loop import LoopServer


class WebsocketsServer:
    """``handler`` serves each connection; ``loop`` and ``server`` are for the peer's publishing."""

    def __init__(
        self,
        handler: Callable[[ServerConnection], Awaitable[None]],
        name: str,
        ssl: SSLContext | None = None,
    ) -> None:
        self.loop = LoopServer(asyncio.new_event_loop, name)
        self._handler = handler
        self._ssl = ssl
        self._server: Server | None = None

    @property
    def server(self) -> Server:
        assert self._server is not None, "start() first"
        return self._server

    def start(self) -> int:
        return self.loop.start(self._serve)

    async def _serve(self) -> int:
        self._server = await serve(
            self._handler, HOST, 0, ping_interval=None, compression=None, ssl=self._ssl
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def stop(self) -> None:
        self.loop.stop(self._close)

    async def _close(self) -> None:
        self.server.close()
        await self.server.wait_closed()
