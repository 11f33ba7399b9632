"""The servers under comparison, behind one small interface: start, publish, client_count, stop.

Both serve on 127.0.0.1 from a thread of the benchmark process (so both run on
``SERVER_CPU``) and are published to from the benchmark's main thread, the way
an agent would use them. Pings are off on both: the raw receivers never answer
them, and a ping frame would be counted as a message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from agentcast import Broadcaster

HOST = "127.0.0.1"


class Peer(Protocol):
    name: str

    def start(self) -> int: ...
    def publish(self, obj: Any) -> None: ...
    @property
    def client_count(self) -> int: ...
    def stop(self) -> None: ...


class AgentcastPeer:
    """agentcast with its defaults, except pings."""

    name = "agentcast"

    def __init__(self) -> None:
        self.hub = Broadcaster(HOST, port=0, ping_interval=0)

    def start(self) -> int:
        return self.hub.start().port

    def publish(self, obj: Any) -> None:
        self.hub.publish(obj)

    @property
    def client_count(self) -> int:
        return self.hub.client_count

    def stop(self) -> None:
        self.hub.stop()


class WebsocketsPeer:
    """websockets' asyncio server on its own asyncio loop, broadcasting as its docs recommend.

    ``publish`` serializes once (``json.dumps``, compact like orjson so both
    servers send the same bytes) and hands the text to the loop with
    ``call_soon_threadsafe``; there ``websockets.broadcast`` writes it to every
    open connection.
    """

    name = "websockets"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="websockets-peer", daemon=True
        )
        self._thread.start()
        return ready.result(timeout=10.0)

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:
            if ready.done():  # failed while serving: let the thread report it
                raise
            ready.set_exception(exc)  # failed to start: start() raises it in the caller

    async def _serve(self, ready: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # Our raw clients offer no extensions; compression=None makes "no deflate" explicit.
        async with serve(_hold_open, HOST, 0, ping_interval=None, compression=None) as server:
            self._server = server
            ready.set_result(server.sockets[0].getsockname()[1])
            await self._stopping.wait()

    def publish(self, obj: Any) -> None:
        assert self._loop is not None, "start() first"
        self._loop.call_soon_threadsafe(self._broadcast, json.dumps(obj, separators=(",", ":")))

    def _broadcast(self, text: str) -> None:
        assert self._server is not None
        broadcast(self._server.connections, text)

    @property
    def client_count(self) -> int:
        """Counted on the loop thread: ``Server.connections`` walks a dict the loop mutates."""
        if self._loop is None:
            return 0
        return asyncio.run_coroutine_threadsafe(self._count(), self._loop).result(timeout=10.0)

    async def _count(self) -> int:
        assert self._server is not None
        return len(self._server.connections)

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=15.0)
        self._thread = self._loop = self._server = self._stopping = None


async def _hold_open(connection: ServerConnection) -> None:
    """A broadcast-only client: keep its connection until it goes away."""
    await connection.wait_closed()


PEERS: dict[str, type[Peer]] = {"agentcast": AgentcastPeer, "websockets": WebsocketsPeer}
