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
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection

from agentcast.loadgen.peers._agents import Watchers
from agentcast.loadgen.peers._websockets_server import WebsocketsServer


class MemgptPeer:
    """A registry of clients and a per-message ``gather`` of per-client sends.

    Many agents: MemGPT sent every agent's messages to every client; here each agent's go
    to the set of clients watching it (``Watchers``), with the same ``gather``.
    """

    def __init__(self) -> None:
        self._websockets = WebsocketsServer(self._handler, "memgpt-peer")
        self.clients: set[ServerConnection] = set()
        self.watchers: Watchers[ServerConnection] = Watchers()

    def start(self) -> int:
        return self._websockets.start()

    async def _handler(self, connection: ServerConnection) -> None:
        self.clients.add(connection)
        self.watchers.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self.clients.discard(connection)
            self.watchers.discard(connection)

    def publish(self, obj: Any) -> None:
        loop = self._websockets.loop.loop
        assert loop is not None, "start() first"
        asyncio.run_coroutine_threadsafe(self._send_to_all_clients(obj), loop)

    async def _send_to_all_clients(self, obj: Any) -> None:
        await asyncio.gather(*(client.send(json.dumps(obj)) for client in self.clients))

    def route(self, watched: Sequence[str]) -> None:
        self._websockets.loop.run(self._route(watched))

    async def _route(self, watched: Sequence[str]) -> None:
        self.watchers.route(watched)

    def publish_to(self, agent: str, obj: Any) -> None:
        loop = self._websockets.loop.loop
        assert loop is not None, "start() first"
        asyncio.run_coroutine_threadsafe(self._send_to_watchers(agent, obj), loop)

    async def _send_to_watchers(self, agent: str, obj: Any) -> None:
        watching = self.watchers.of(agent)
        await asyncio.gather(*(client.send(json.dumps(obj)) for client in watching))

    @property
    def client_count(self) -> int:
        return len(self.clients)

    def stop(self) -> None:
        self._websockets.stop()
