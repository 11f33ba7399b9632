"""Processes and clients for the backplane tests: nodes, publishers, resuming followers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import websockets

NODE_SCRIPT = str(Path(__file__).with_name("node_process.py"))
START_TIMEOUT = 30.0


class Process:
    """``node_process.py`` as a child: a node (``port``) or a Publisher."""

    def __init__(self, role: str, url: str, name: str) -> None:
        self.name = name
        self.popen = subprocess.Popen(
            [sys.executable, NODE_SCRIPT, role, url, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        first = self.read_line()
        self.port = int(first.split()[1]) if role == "node" else 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def read_line(self) -> str:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited with {self.popen.wait(5)}")
        return line.strip()

    def command(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    async def publish(self, count: int, channels: int, rate: float = 0, every: int = 0) -> None:
        """Publish (a broadcast after every ``every``-th message) and wait for "published"
        (the Publisher has flushed by then)."""
        self.command(f"publish {count} {channels} {rate} {every}")
        assert await asyncio.to_thread(self.read_line) == "published"

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.command("stop")
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                pipe.close()


class Follower:
    """One client of one channel: on a lost connection it moves to the next node and
    resumes with ``since`` = the last seq it got. ``received`` is every frame in the
    order it came: channel messages (with ``seq``), broadcasts (with ``b``) and notices
    (with ``code``), so a test can tell where a notice stands."""

    def __init__(self, urls: list[str], channel: str, first: int) -> None:
        self.urls = urls
        self.channel = channel
        self.node = first
        self.received: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.broadcasts: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []
        self.last_seq = 0
        self.subscribed = asyncio.Event()
        self.moves = 0

    async def run(self) -> None:
        while True:
            try:
                async with websockets.connect(self.urls[self.node % len(self.urls)]) as ws:
                    subscribe = {"type": "subscribe", "agent_id": self.channel}
                    await ws.send(orjson.dumps({**subscribe, "since": self.last_seq}).decode())
                    self.subscribed.set()
                    async for raw in ws:
                        message = orjson.loads(raw)
                        self.received.append(message)
                        if "seq" in message:
                            self.messages.append(message)
                            self.last_seq = message["seq"]
                        elif "b" in message:
                            self.broadcasts.append(message)
                        else:
                            self.notices.append(message)
            except (OSError, websockets.ConnectionClosed):
                pass
            self.node += 1
            self.moves += 1
            await asyncio.sleep(0.05)

    def by_publisher(self, key: str = "n") -> dict[str, list[int]]:
        """Each publisher's ``n`` values (``b``: its broadcasts) in the order this client
        got them."""
        result: dict[str, list[int]] = {}
        for message in self.broadcasts if key == "b" else self.messages:
            result.setdefault(message["pub"], []).append(message[key])
        return result

    def stream_of(self, agent_id: str | None) -> list[dict[str, Any]]:
        """The received frames of one stream (None: the broadcasts) with its notices."""
        key = "b" if agent_id is None else "n"
        return [
            m for m in self.received
            if key in m or ("code" in m and m.get("agent_id") == agent_id)
        ]  # fmt: skip
