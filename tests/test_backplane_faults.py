"""The backplane under faults: a dropped pub/sub connection, garbage in Redis, a failing script."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aioredis

from agentcast import AgentServer
from clients import DEMO_STEP, memgpt_exchange, run, user_message, websockets_clients
from redis_server import RedisServer


async def ask_redis(url: str, *command: str | bytes) -> Any:
    """One command on a connection of its own, closed after."""
    client = aioredis.Redis.from_url(url)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


async def drop_pubsub(url: str) -> None:
    """Close every pub/sub connection on the broker, as a network blip would."""
    assert await ask_redis(url, "CLIENT", "KILL", "TYPE", "pubsub") >= 1


def test_route_all_keeps_answering_across_pubsub_drops(redis_server: RedisServer) -> None:
    """With ``route="all"`` the agent's messages are broadcasts through Redis, and the
    start and end markers are direct sends that wait for them: a broadcast published
    while the node's pub/sub connection is down must neither vanish nor hold back
    every later send."""
    with AgentServer(port=0, backplane=redis_server.url, route="all") as server:

        async def scenario() -> None:
            async with websockets_clients(f"ws://127.0.0.1:{server.port}/", 2) as clients:
                talker, watcher = clients
                for attempt in range(4):
                    if attempt:
                        await drop_pubsub(redis_server.url)
                    reply = await asyncio.wait_for(
                        memgpt_exchange(talker, user_message(f"hi {attempt}")), 10
                    )
                    assert [r["type"] for r in reply] == DEMO_STEP
                    watched = [orjson.loads(await asyncio.wait_for(watcher.recv(), 10))
                               for _ in range(3)]  # fmt: skip
                    assert watched == reply[1:-1]  # the broadcasts, each once, in order

        run(scenario())
