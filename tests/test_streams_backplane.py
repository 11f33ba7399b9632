"""Agent event streams through the Redis backplane: a run produced on one node reaches the
native watchers of the others, and survives the loss of a watcher's node."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import websockets

from backplane_nodes import Process
from clients import run
from redis_server import RedisServer
from stream_checks import check_stream, text

DELTAS = 2000
RATE = 1000.0  # deltas per second: a two-second run, killed in its first half


class Watcher:
    """A native client of channel ``s`` that moves to the next node when its node dies,
    resuming with ``since`` = the last seq it got."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.events: list[dict[str, Any]] = []
        self.moves = 0
        self.some_arrived = asyncio.Event()

    async def follow(self) -> None:
        while True:
            since = self.events[-1]["seq"] if self.events else None
            try:
                async with websockets.connect(self.urls[0] + "?protocol=agentcast") as ws:
                    request = {"type": "subscribe", "channel": "s", "since": since}
                    await ws.send(orjson.dumps(request).decode())
                    async for data in ws:
                        event = orjson.loads(data)
                        if "seq" not in event:
                            continue
                        self.events.append(event)
                        if len(self.events) >= 200:
                            self.some_arrived.set()
                        if event["type"] == "run_end":
                            return
            except (OSError, websockets.ConnectionClosed):
                self.moves += 1
                self.urls = self.urls[1:]
                assert self.urls, "no node left"


def test_a_run_on_node_1_reaches_nodes_2_and_3_and_survives_killing_node_3(
    redis_server: RedisServer,
) -> None:
    nodes = [Process("node", redis_server.url, f"node-{i}") for i in (1, 2, 3)]
    try:
        steady = Watcher([nodes[1].url])
        moved = Watcher([nodes[2].url, nodes[1].url])

        async def scenario() -> None:
            following = [asyncio.create_task(w.follow()) for w in (steady, moved)]
            nodes[0].command(f"stream {DELTAS} {RATE}")
            await asyncio.wait_for(moved.some_arrived.wait(), 30)
            await asyncio.to_thread(nodes[2].kill)  # mid-run
            await asyncio.wait_for(asyncio.gather(*following), 60)
            assert await asyncio.to_thread(nodes[0].read_line) == "published"

        run(scenario())
    finally:
        for node in nodes:
            node.stop()
    full = "".join(f"t{k} " for k in range(DELTAS))
    for watcher in (steady, moved):
        check_stream(watcher.events)
        assert text(watcher.events, "m") == full
    assert moved.moves == 1 and steady.moves == 0
    assert moved.events[-1]["seq"] == steady.events[-1]["seq"] == DELTAS + 4
