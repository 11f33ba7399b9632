"""MemGPT's original WebSocket server, the pattern agentcast replaces.

Fan-out: MemGPT's ``SyncWebSocketInterface`` kept a set of ``websockets`` connections
and, for every message, scheduled from the agent's thread with
``run_coroutine_threadsafe`` an ``asyncio.gather`` of one ``send(json.dumps(msg))``
per client: one serialization, one coroutine and one write per client per
message, to every client whichever agent spoke. This peer does exactly that on
websockets' current asyncio server (the legacy one MemGPT used is deprecated), on
asyncio's own loop.

Requests: MemGPT's ``WebSocketServer.handle_client`` (``memgpt/server/ws_api/server.py``),
with agentcast's ``DemoAgentServer`` as its ``SyncServer``: each connection's messages
in turn, the agent's step run on the loop itself, and ``end_pause`` seconds of
``asyncio.sleep`` before ``agent_response_end`` (MemGPT's 1 s, "w/o this messages may be
missed": the agent's messages are still queued when the step returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agentcast.bench.peers import tls_identity
from agentcast.bench.peers._agents import Watchers
from agentcast.bench.peers._websockets_server import WebsocketsServer
from agentcast.memgpt.backends import DemoAgentServer

END_PAUSE = 1.0  # seconds MemGPT's server sleeps before agent_response_end
USER_ID = "NULL"  # the user MemGPT's server names in every backend call


class _Interface:
    """MemGPT's interface methods, each a message to every client (its ``_send_to_all_clients``)."""

    def __init__(self, peer: MemgptPeer) -> None:
        self._peer = peer

    def _agent_response(self, message_type: str, message: str) -> None:
        self._peer.publish(
            {"type": "agent_response", "message_type": message_type, "message": message}
        )

    def internal_monologue(self, msg: str, msg_obj: object = None) -> None:
        self._agent_response("internal_monologue", msg)

    def assistant_message(self, msg: str, msg_obj: object = None) -> None:
        self._agent_response("assistant_message", msg)

    def function_message(self, msg: str, msg_obj: object = None) -> None:
        self._agent_response("function_message", msg)


class MemgptPeer:
    """A registry of clients, a per-message ``gather`` of per-client sends, and MemGPT's
    request handling in front of the demo agent.

    Many agents: MemGPT sent every agent's messages to every client; here each agent's go
    to the set of clients watching it (``Watchers``), with the same ``gather``.
    """

    def __init__(self, tls: int = 0, end_pause: float = END_PAUSE) -> None:
        context, self.ca_pem = tls_identity(tls)
        self._websockets = WebsocketsServer(self._handler, "memgpt-peer", context)
        self.clients: set[ServerConnection] = set()
        self.end_pause = end_pause
        # The demo agent calls only the interface's three message methods.
        interface: Any = _Interface(self)
        self.backend = DemoAgentServer(default_interface=interface)
        self.watchers: Watchers[ServerConnection] = Watchers()

    def start(self) -> int:
        return self._websockets.start()

    async def _handler(self, connection: ServerConnection) -> None:
        self.clients.add(connection)
        self.watchers.add(connection)
        try:
            with contextlib.suppress(ConnectionClosed):
                async for data in connection:
                    await self._request(connection, data)
        finally:
            self.clients.discard(connection)
            self.watchers.discard(connection)

    async def _request(self, connection: ServerConnection, data: str | bytes) -> None:
        """One client message, answered as MemGPT's ``handle_client`` answers it."""
        try:
            body = json.loads(data)
        except ValueError:
            await connection.send(_reply("server_error", message="bad data from client"))
            return
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "command" and body.get("command") == "create_agent":
            try:
                self.backend.create_agent(USER_ID, agent_config=body.get("config") or {})
                status = "OK: Agent initialized"
            except Exception as exc:
                status = f"Error: Failed to init agent - {exc}"
            await connection.send(_reply("command_response", status=status))
        elif kind == "user_message":
            agent_id = body.get("agent_id")
            if agent_id is None:
                error = "agent_id was not specified in the request"
                await connection.send(_reply("agent_response_error", message=error))
                return
            await connection.send(_reply("agent_response_start"))
            try:
                self.backend.user_message(USER_ID, agent_id, str(body.get("message")))
            except Exception as exc:
                error = f"server.user_message failed with: {exc}"
                await connection.send(_reply("agent_response_error", message=error))
            await asyncio.sleep(self.end_pause)
            await connection.send(_reply("agent_response_end"))
        else:
            error = f"unrecognized client package data type: {kind!r}"
            await connection.send(_reply("server_error", message=error))

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


def _reply(kind: str, **fields: str) -> str:
    """A server frame as MemGPT's ``protocol`` module built it: ``json.dumps`` of a dict."""
    return json.dumps({"type": kind, **fields})
