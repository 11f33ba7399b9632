"""Real WebSocket clients for the tests: picows and websockets, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import orjson
import uvloop
import websockets
from picows import WSListener, WSMsgType, WSTransport, ws_connect
from picows.picows import WSFrame

from agentcast import Broadcaster
from agentcast._ext import FanoutCore, MemorySink

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a client-side scenario on its own uvloop loop in the test's thread."""
    return uvloop.run(coro)


class Collector(WSListener):  # type: ignore[misc]
    """A picows client listener that keeps every text message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.close_code: int | None = None
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.messages.append(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            transport.send_close(frame.get_close_code())
            transport.disconnect()


@contextlib.asynccontextmanager
async def picows_clients(url: str, count: int, **kwargs: Any) -> AsyncIterator[list[Collector]]:
    """``count`` picows connections (``kwargs`` go to ``ws_connect``), disconnected (and
    waited for) on exit."""
    results = await asyncio.gather(*(ws_connect(Collector, url, **kwargs) for _ in range(count)))
    try:
        yield [listener for _, listener in results]
    finally:
        for transport, _ in results:
            transport.disconnect()
        await asyncio.gather(*(transport.wait_disconnected() for transport, _ in results))


@contextlib.asynccontextmanager
async def websockets_clients(
    url: str, count: int, **kwargs: Any
) -> AsyncIterator[list[websockets.ClientConnection]]:
    """``count`` websockets connections (no size limit), closed on exit."""
    connections = await asyncio.gather(
        *(websockets.connect(url, max_size=None, **kwargs) for _ in range(count))
    )
    try:
        yield list(connections)
    finally:
        await asyncio.gather(*(c.close() for c in connections))


async def wait_for(
    condition: Callable[[], bool], timeout: float = 10.0, what: str | Callable[[], str] = ""
) -> None:
    """Poll until ``condition()`` holds; fail with ``what`` (or what it returns) after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said or condition}")
        await asyncio.sleep(0.005)


def raw_upgrade(
    port: int, rcvbuf: int | None = None, tls: ssl.SSLContext | None = None, path: str = "/"
) -> socket.socket:
    """A blocking raw socket (over TLS with ``tls``) that completes the WebSocket handshake
    and then reads nothing."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % path.encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("server closed during the handshake")
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def masked_text(payload: bytes) -> bytes:
    """A client text frame (zero mask key) of fewer than 126 bytes."""
    return bytes([0x81, 0x80 | len(payload)]) + bytes(4) + payload


def publish_until_a_client_is_dropped(hub: Any) -> None:
    """Publish 100 KB at a time, each drained by the hub, until it drops a client (a
    stalled reader: ``raw_upgrade`` with a small ``rcvbuf``); at most ~100 MB, far beyond
    any socket buffer."""
    for _ in range(1000):
        if hub.stats()["dropped_clients"]:
            return
        for _ in range(100):
            hub.publish({"pad": "x" * 1000})
        run(wait_for(lambda: hub.stats()["pending"] == 0))


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into (opcode, payload); fails on a truncated tail."""
    frames = []
    pos = 0
    while pos < len(data):
        opcode = data[pos] & 0x0F
        length = data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        assert pos + length <= len(data), "truncated frame"
        frames.append((opcode, data[pos : pos + length]))
        pos += length
    return frames


FINAL = {"agent_response_end", "agent_response_error", "command_response", "server_error"}
# What the demo agent answers to one user message, frame by frame.
DEMO_STEP = [
    "agent_response_start",
    "agent_response",
    "agent_response",
    "agent_response",
    "agent_response_end",
]


async def memgpt_exchange(websocket: Any, payload: Any) -> list[dict[str, Any]]:
    """What MemGPT's example client does: send one JSON message, read until a final type."""
    await websocket.send(
        payload if isinstance(payload, (str, bytes)) else orjson.dumps(payload).decode()
    )
    replies = []
    while True:
        reply = orjson.loads(await websocket.recv())
        replies.append(reply)
        if reply["type"] in FINAL:
            return replies


def user_message(text: str, agent_id: str | None = "a1") -> dict[str, Any]:
    return {"type": "user_message", "message": text, "agent_id": agent_id}


def drain(core: FanoutCore) -> None:
    """Tick a loop-less core until its queue is empty."""
    while core.pending:
        core.tick()


def frames_of(sink: MemorySink) -> list[bytes]:
    """The payloads a memory sink was written, frame by frame."""
    return [payload for _, payload in parse_frames(bytes(sink.data or b""))]


def subscribed(hub: Broadcaster, client: int, channel: str) -> None:
    """Subscribe and return once the subscription is in effect on the node."""
    done = threading.Event()
    hub.subscribe(client, channel)
    hub.after_pending(done.set)
    assert done.wait(10), f"the subscription to {channel!r} never took effect"
