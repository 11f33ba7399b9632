"""Agent event streams through the Redis backplane: a run produced on one node reaches the
native watchers of the others, and survives the loss of a watcher's node."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import websockets

from agentcast import Broadcaster, Publisher
from backplane_nodes import Process
from clients import run, wait_for
from redis_server import RedisServer
from sse_checks import parse_sse, raw_get, read_all
from stream_checks import check_stream, read_until, subscribe, subscribing_hub, text

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


def test_a_node_that_did_not_follow_a_chat_resumes_its_open_run(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """The AI SDK's resume reaches a node that had no watcher of the chat: it reads the
    chat's retained window from Redis first, so it knows the open run, and replays it
    whole; a chat with none is 204 there too."""
    producer = hub_factory(backplane=redis_server.url)
    other = hub_factory(backplane=redis_server.url)
    with producer.run("chat-9") as agent_run:
        with agent_run.message(role="assistant") as message:
            message.delta("Hel")
            message.delta("lo")
        run(wait_for(lambda: producer.stats()["backplane_acked"] == 5, what="in Redis"))
        sock = raw_get(other.port, "/api/chat/chat-9/stream")
        try:
            run(wait_for(lambda: other.stats().get("sse_streams") == 1, what="the stream"))
        except BaseException:
            sock.close()
            raise
    try:
        body = read_all(sock)  # the server closes after [DONE]
    finally:
        sock.close()
    assert body.startswith(b"HTTP/1.1 200 OK\r\n")
    chunks = [data for _, data in parse_sse(body.partition(b"\r\n\r\n")[2])[0]]
    assert chunks[-1] == b"[DONE]"
    parsed = [orjson.loads(chunk) for chunk in chunks[:-1]]
    assert [c["type"] for c in parsed] == ["start", "text-start", "text-delta", "text-delta",
                                           "text-end", "finish"]  # fmt: skip
    assert "".join(c["delta"] for c in parsed if c["type"] == "text-delta") == "Hello"
    nothing = raw_get(other.port, "/api/chat/chat-none/stream")
    try:
        assert read_all(nothing).startswith(b"HTTP/1.1 204 No Content\r\n")
    finally:
        nothing.close()
    run(wait_for(lambda: other.client_count == 0, what="the followers gone"))


def test_a_publishers_run_names_its_prompt_to_a_nodes_watchers(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """A worker with no clients starts a run through Redis with the user's line it answers:
    a node's native watcher gets it in run_start."""
    node = subscribing_hub(hub_factory, backplane=redis_server.url)

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{node.port}/?protocol=agentcast") as ws:
            await subscribe(ws, "w")
            with (
                Publisher(redis_server.url) as publisher,
                publisher.run("w", prompt="hello there") as agent_run,
            ):
                agent_run.say("hi")
            return await read_until(ws, "run_end")

    events = run(scenario())
    check_stream(events)
    assert events[0]["type"] == "run_start" and events[0]["prompt"] == "hello there"
