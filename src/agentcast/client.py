"""An interactive client like MemGPT's example: send a line, print replies until the end marker.

Reconnects up to ``retries`` times in a row with exponential backoff when the
connection drops, then gives up with exit code 1.
"""

from __future__ import annotations

import asyncio
import sys

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


async def _exchange(websocket: websockets.ClientConnection, line: str, agent_id: str) -> None:
    await websocket.send(protocol.user_message(line, agent_id).decode())
    while True:
        reply = orjson.loads(await websocket.recv())
        print(describe(reply), flush=True)
        if reply.get("type") in FINAL_TYPES:
            return


async def _session(url: str, agent_id: str, retries: int, backoff: float) -> int:
    loop = asyncio.get_running_loop()
    pending: str | None = None
    failures = 0
    while True:
        try:
            async with websockets.connect(url) as websocket:
                failures = 0
                while True:
                    if pending is None:
                        line = await loop.run_in_executor(None, sys.stdin.readline)
                        if not line:
                            return 0
                        pending = line.rstrip("\n")
                        if not pending:
                            pending = None
                            continue
                    await _exchange(websocket, pending, agent_id)
                    pending = None
        except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake) as exc:
            failures += 1
            if failures > retries:
                print(f"agentcast client: giving up on {url}: {exc}", file=sys.stderr)
                return 1
            delay = backoff * 2 ** (failures - 1)
            print(f"agentcast client: {exc}; reconnecting in {delay:.1f} s", file=sys.stderr)
            await asyncio.sleep(delay)


def run_client(url: str, agent_id: str, retries: int = 5, backoff: float = 0.5) -> int:
    try:
        return asyncio.run(_session(url, agent_id, retries, backoff))
    except KeyboardInterrupt:
        return 0
