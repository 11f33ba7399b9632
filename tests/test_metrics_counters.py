"""The counters behind /metrics move by exactly what real traffic implies.

Every test drives a real server with real clients (websockets, raw sockets) and reads
``GET /metrics`` through ``prometheus_client``'s parser before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from agentcast import Broadcaster
from agentcast.app import AgentServer
from clients import memgpt_exchange, run, wait_for, websockets_clients
from test_http import metrics


@pytest.fixture
def server_factory() -> Iterator[Callable[..., AgentServer]]:
    """Start MemGPT-protocol servers on free ports; each is stopped at the end."""
    servers: list[AgentServer] = []

    def start(**kwargs: object) -> AgentServer:
        server = AgentServer(port=0, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def scrape(port: int) -> Callable[[str], float]:
    """One /metrics read: a sample's value by name and labels (0 for one not there)."""
    samples = metrics(port)
    return lambda name: samples.get(name, 0.0)


async def until_metric(port: int, name: str, value: float) -> None:
    """Wait until the sample ``name`` reads ``value`` (what it read if it never does)."""
    await wait_for(
        lambda: scrape(port)(name) == value, what=lambda: f"{name} = {scrape(port)(name)}"
    )


def test_subscriptions_follow_subscribes_unsubscribes_and_disconnects(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory()
    port = server.port

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{port}", 2) as (alice, bob):
            for client, agents in ((alice, ("a1", "a2", "a3")), (bob, ("a1", "a2"))):
                for agent in agents:
                    await memgpt_exchange(client, {"type": "subscribe", "agent_id": agent})
            await until_metric(port, "agentcast_subscriptions", 5)
            await memgpt_exchange(alice, {"type": "unsubscribe", "agent_id": "a2"})
            await memgpt_exchange(alice, {"type": "subscribe", "agent_id": "a1"})  # held already
            await until_metric(port, "agentcast_subscriptions", 4)
        await until_metric(port, "agentcast_subscriptions", 0)  # both gone with their 4

    run(scenario())


def test_a_resume_past_the_kept_history_counts_one_history_gap_served(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory(history_size=2)
    hub: Broadcaster = server.hub
    port = server.port
    for i in range(5):
        hub.publish({"type": "agent_response", "message": str(i)}, channel="a1")
    before = scrape(port)

    async def resume(since: int) -> None:
        async with websockets_clients(f"ws://127.0.0.1:{port}", 1) as (client,):
            await memgpt_exchange(client, {"type": "subscribe", "agent_id": "a1", "since": since})

    async def scenario() -> None:
        await resume(0)  # seqs 1..3 are gone: a history_gap
        await until_metric(port, "agentcast_history_gaps_served_total", 1)
        await resume(3)  # 4 and 5 are kept: no gap
        await resume(5)  # up to date: no gap

    run(scenario())
    after = scrape(port)
    assert after("agentcast_history_gaps_served_total") == 1
    assert after("agentcast_seq_gaps_total") == before("agentcast_seq_gaps_total") == 0
