"""Growth probes run twice against a server process of its own: the second round must not
grow it (once it kept every fresh agent id's channel, and every create_agent config).

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
MAX_CHANNELS = 2000
FRESH_IDS = 20_000  # a round's channels: ten times the cap


def _rounds(probe: Callable[[str, int], Awaitable[None]], rounds: int = 2) -> list[tuple[int, int]]:
    """(RSS in KiB, channels kept) before the first round and after each."""
    server = ServerProcess(
        max_message_size=1024 * 1024, max_message_rate=0, max_channels=MAX_CHANNELS
    )
    url = f"ws://127.0.0.1:{server.port}"
    counts = [server.counts()[1:]]
    try:
        for round_number in range(rounds):
            run(probe(url, round_number))
            run(wait_for(lambda: server.status()[0] == 0, 10, "the probe's clients gone"))
            counts.append(server.counts()[1:])
    finally:
        assert server.stop() == 0
    return counts


async def _fresh_agent_ids(url: str, round_number: int) -> None:
    """Each round, 20,000 fresh 200-character agent ids, each subscribed to with ``since``
    (which makes the channel's seq and history for the resume) and left at once."""
    async with websockets.connect(url) as ws:
        for start in range(0, FRESH_IDS, 500):
            for i in range(start, start + 500):
                agent_id = f"{round_number}-{i}-" + "a" * 200
                for request in (
                    {"type": "subscribe", "agent_id": agent_id, "since": 0},
                    {"type": "unsubscribe", "agent_id": agent_id},
                ):
                    await ws.send(orjson.dumps(request).decode())
            for _ in range(1000):
                assert orjson.loads(await ws.recv())["type"] == "command_response"


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


def test_fresh_agent_ids_do_not_grow_the_server_round_after_round() -> None:
    """Uncapped, a round kept its 20,000 channels: +9.4 MB a round. Capped, the second
    round still grows ~2 MB (the first to evict: the allocator's working size), then none."""
    counts = _rounds(_fresh_agent_ids, rounds=3)
    assert all(channels <= MAX_CHANNELS for _, channels in counts), counts
    assert counts[3][1] == MAX_CHANNELS, counts  # the probe did reach the cap
    assert counts[3][0] - counts[2][0] < SECOND_ROUND_KIB, counts


def test_create_agent_does_not_grow_the_server_round_after_round() -> None:
    counts = _rounds(_create_agents)
    assert counts[2][0] - counts[1][0] < SECOND_ROUND_KIB, counts
