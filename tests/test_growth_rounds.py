"""Growth probes run twice against a server process of its own: the second round must not
grow it (once it kept every huge agent id's channel, and every create_agent config).

The first round brings every bounded structure to its bound (and the allocator to its
working size); what the second round adds is what the server keeps without a bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import websockets

from agent_server_process import ServerProcess
from clients import run, wait_for

# Growth (KiB of RSS) a second round may show: noise, not a kept copy of what was sent.
# Unbounded, the probes below grow the server by 10-30 MB a round.
SECOND_ROUND_KIB = 2048


def _rounds(probe: Callable[[str, int], Awaitable[None]]) -> list[int]:
    """RSS (KiB) before, after the first round and after the second."""
    server = ServerProcess(max_message_size=1024 * 1024)
    url = f"ws://127.0.0.1:{server.port}"
    rss = [server.status()[1]]
    try:
        for round_number in range(2):
            run(probe(url, round_number))
            run(wait_for(lambda: server.status()[0] == 0, 10, "the probe's clients gone"))
            rss.append(server.status()[1])
    finally:
        assert server.stop() == 0
    return rss


async def _huge_agent_ids(url: str, round_number: int) -> None:
    """Fresh 100,000-character agent ids each round, talked to and subscribed to."""
    async with websockets.connect(url, max_size=None) as ws:
        for i in range(40):
            agent_id = f"{round_number}-{i}-" + "a" * 100_000
            for request in (
                {"type": "user_message", "message": "hi", "agent_id": agent_id},
                {"type": "subscribe", "agent_id": agent_id + "s", "since": 0},
            ):
                await ws.send(orjson.dumps(request).decode())
                while orjson.loads(await ws.recv())["type"] not in (
                    "agent_response_end",
                    "agent_response_error",
                    "server_error",
                    "command_response",
                ):
                    pass


async def _create_agents(url: str, round_number: int) -> None:
    """10,000 create_agent commands with fresh names and 1 KB configs each round."""

    async def one_client(client: int) -> None:
        async with websockets.connect(url) as ws:
            for i in range(80):  # within the message rate's burst
                name = f"agent-{round_number}-{client}-{i}"
                config = {"name": name, "persona": "p" * 1000}
                await ws.send(
                    orjson.dumps(
                        {"type": "command", "command": "create_agent", "config": config}
                    ).decode()
                )
                assert orjson.loads(await ws.recv())["type"] == "command_response"

    await asyncio.gather(*(one_client(client) for client in range(125)))


def test_huge_agent_ids_do_not_grow_the_server_round_after_round() -> None:
    rss = _rounds(_huge_agent_ids)
    assert rss[2] - rss[1] < SECOND_ROUND_KIB, rss


def test_create_agent_does_not_grow_the_server_round_after_round() -> None:
    rss = _rounds(_create_agents)
    assert rss[2] - rss[1] < SECOND_ROUND_KIB, rss
