"""MemGPT's original WebSocket fan-out, the pattern agentcast replaces.

MemGPT's ``SyncWebSocketInterface`` kept a set of ``websockets`` connections
and, for every message, scheduled from the agent's thread with
``run_coroutine_threadsafe`` an ``asyncio.gather`` of one ``send(json.dumps(msg))``
per client: one serialization, one coroutine and one write per client per
message. This peer does exactly that on websockets' current asyncio server
(the legacy one MemGPT used is deprecated), on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import ServerConnection

from agentcast.loadgen.peers import tls_identity
from agentcast.loadgen.peers._websockets_server import WebsocketsServer


class MemgptPeer:
    """A registry of clients and a per-message ``gather`` of per-client sends."""

    def __init__(self, tls: int = 0) -> None:
        context, self.ca_pem = tls_identity(tls)
        self._websockets = WebsocketsServer(self._handler, "memgpt-peer", context)
        self.clients: set[ServerConnection] = set()

    def start(self) -> int:
        return self._websockets.start()

    async def _handler(self, connection: ServerConnection) -> None:
        self.clients.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self.clients.discard(connection)

    def publish(self, obj: Any) -> None:
        loop = self._websockets.loop.loop
        assert loop is not None, "start() first"
        asyncio.run_coroutine_threadsafe(self._send_to_all_clients(obj), loop)

    async def _send_to_all_clients(self, obj: Any) -> None:
        await asyncio.gather(*(client.send(json.dumps(obj)) for client in self.clients))

    @property
    def client_count(self) -> int:
        return len(self.clients)

    def stop(self) -> None:
        self._websockets.stop()
