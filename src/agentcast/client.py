"""An interactive client like MemGPT's example: send a line, print replies until the end marker.

Reconnects up to ``retries`` times in a row with exponential backoff when the
connection drops, then gives up with exit code 1. After a reconnect it resumes
the agent's stream from the last ``seq`` it printed (``subscribe`` with
``since``), so nothing the agent said meanwhile is lost while it is kept.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any

import orjson
import websockets

from agentcast import protocol

DEFAULT_URL = "ws://127.0.0.1:8282/"
FINAL_TYPES = frozenset(
    {"agent_response_end", "agent_response_error", "command_response", "server_error"}
)


def describe(reply: dict[str, object]) -> str:
    kind = reply.get("type")
    if kind == "agent_response":
        return f"[{reply.get('message_type')}] {reply.get('message')}"
    if kind in ("agent_response_start", "agent_response_end"):
        return f"-- {kind} --"
    return f"[{kind}] {reply.get('message') or reply.get('status') or ''}"


class _Stream:
    """Prints replies and remembers the agent's last seq, to resume from after a reconnect."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.last_seq: int | None = None

    async def exchange(self, websocket: websockets.ClientConnection, request: bytes) -> None:
        """Send one request; print every reply up to and including a final one."""
        await websocket.send(request.decode())
        while True:
            reply = orjson.loads(await websocket.recv())
            seq = reply.get("seq")
            if reply.get("agent_id") == self.agent_id and isinstance(seq, int):
                if self.last_seq is not None and seq <= self.last_seq:
                    continue  # already printed before the reconnect
                self.last_seq = seq
            print(describe(reply), flush=True)
            if reply.get("type") in FINAL_TYPES:
                return

    async def resume(self, websocket: websockets.ClientConnection) -> None:
        if self.last_seq is not None:
            await self.exchange(websocket, protocol.subscribe(self.agent_id, self.last_seq))


async def _session(
    url: str, agent_id: str, retries: int, backoff: float, tls: ssl.SSLContext | None
) -> int:
    loop = asyncio.get_running_loop()
    stream = _Stream(agent_id)
    options: dict[str, Any] = {} if tls is None else {"ssl": tls}  # no ssl=None for wss://
    pending: str | None = None
    failures = 0
    while True:
        try:
            async with websockets.connect(url, **options) as websocket:
                failures = 0
                await stream.resume(websocket)
                while True:
                    if pending is None:
                        line = await loop.run_in_executor(None, sys.stdin.readline)
                        if not line:
                            return 0
                        pending = line.rstrip("\n")
                        if not pending:
                            pending = None
                            continue
                    await stream.exchange(websocket, protocol.user_message(pending, agent_id))
                    pending = None
        except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake) as exc:
            failures += 1
            if failures > retries:
                print(f"agentcast client: giving up on {url}: {exc}", file=sys.stderr)
                return 1
            delay = backoff * 2 ** (failures - 1)
            print(f"agentcast client: {exc}; reconnecting in {delay:.1f} s", file=sys.stderr)
            await asyncio.sleep(delay)


def run_client(
    url: str,
    agent_id: str,
    retries: int = 5,
    backoff: float = 0.5,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Chat until stdin ends; ``tls`` verifies a ``wss://`` server (default: the system's CAs)."""
    try:
        return asyncio.run(_session(url, agent_id, retries, backoff, tls))
    except KeyboardInterrupt:
        return 0
