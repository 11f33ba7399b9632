"""Per-IP connection limits, answered at upgrade: a cap on open connections (HTTP 503)
and on new connections a second (HTTP 429), counted in stats; clients from other
addresses (127.0.0.2 is loopback too) are served throughout."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator

import pytest
import websockets

from agentcast.admission import ConnectionAdmission
from agentcast.app import AgentServer
from clients import DEMO_STEP, memgpt_exchange, run, user_message, wait_for
from serve_cli import AGENTCAST, serving

OTHER_IP = "127.0.0.2"


async def _refused_status(url: str) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    return int(refused.value.response.status_code)


async def _served(url: str, local_ip: str = "127.0.0.1") -> None:
    async with websockets.connect(url, local_addr=(local_ip, 0)) as control:
        assert [r["type"] for r in await memgpt_exchange(control, user_message("hi"))] == DEMO_STEP


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
def test_connections_beyond_the_per_ip_cap_get_503_and_a_closed_one_frees_its_slot(
    transport: str,
) -> None:
    with AgentServer(port=0, max_connections_per_ip=3, transport=transport) as server:
        url = f"ws://127.0.0.1:{server.port}"

        async def scenario() -> None:
            first = await websockets.connect(url)
            async with websockets.connect(url), websockets.connect(url):
                assert await _refused_status(url) == 503
                assert await _refused_status(url) == 503
                await _served(url, OTHER_IP)  # another address has slots of its own
                assert [r["type"] for r in await memgpt_exchange(first, user_message("hi"))] == (
                    DEMO_STEP
                )
                await first.close()
                await wait_for(lambda: server.hub.stats()["connections"] == 2, what="released")
                await _served(url)  # the slot it held is free
            await wait_for(lambda: server.hub.stats()["connections"] == 0, what="all released")

        run(scenario())
        stats = server.hub.stats()
        assert stats["connections_refused_per_ip"] == 2
        assert stats["connections_refused_rate"] == 0
        assert stats["connection_ips"] == 0


def test_a_connection_that_never_upgrades_holds_a_slot_until_it_goes() -> None:
    with AgentServer(port=0, max_connections_per_ip=1) as server:
        url = f"ws://127.0.0.1:{server.port}"

        async def scenario() -> None:
            with socket.create_connection(("127.0.0.1", server.port)):  # no request sent
                await wait_for(lambda: server.hub.stats()["connections"] == 1, what="counted")
                assert await _refused_status(url) == 503
            await wait_for(lambda: server.hub.stats()["connections"] == 0, what="released")
            await _served(url)

        run(scenario())


def test_a_connect_burst_over_the_rate_gets_429() -> None:
    # Refilled at one per 100 s: no new token comes during the test.
    with AgentServer(port=0, max_connections_per_ip=3, max_connect_rate=0.01) as server:
        url = f"ws://127.0.0.1:{server.port}"

        async def scenario() -> None:
            async with websockets.connect(url) as first, websockets.connect(url):
                async with websockets.connect(url):  # the burst: up to the cap
                    pass
                assert await _refused_status(url) == 429  # a slot is free; the rate is spent
                await _served(url, OTHER_IP)  # its own bucket
                assert [r["type"] for r in await memgpt_exchange(first, user_message("hi"))] == (
                    DEMO_STEP
                )

        run(scenario())
        assert server.hub.stats()["connections_refused_rate"] == 1


def test_what_admission_keeps_per_address_is_bounded() -> None:
    """A bucket is forgotten once it would be full again: 100,000 addresses connecting
    one a millisecond leave the buckets of the last second only."""
    now = [0.0]
    admission = ConnectionAdmission(max_per_ip=10, max_rate=10.0, clock=lambda: now[0])
    for i in range(100_000):
        now[0] = i / 1000
        address = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        admission.connected(address)
        assert admission.refusal(address) is None
        admission.disconnected(address)
    assert admission.stats()["connection_ips"] == 0
    assert len(admission._buckets) <= 1000  # refill time: 10 tokens / 10 a second = 1 s


@pytest.fixture
def served_with_cap() -> Iterator[int]:
    with serving("--max-connections-per-ip", "2") as (_, port):
        yield port


def test_agentcast_serve_caps_connections_per_ip(served_with_cap: int) -> None:
    url = f"ws://127.0.0.1:{served_with_cap}"

    async def scenario() -> None:
        async with websockets.connect(url), websockets.connect(url):
            assert await _refused_status(url) == 503
            await _served(url, OTHER_IP)

    run(scenario())


@pytest.mark.parametrize(
    "argument", [["--max-connections-per-ip", "-1"], ["--max-connect-rate", "-0.5"]]
)
def test_agentcast_serve_refuses_a_negative_limit_in_one_line(argument: list[str]) -> None:
    result = subprocess.run(
        [*AGENTCAST, "serve", "--port", "0", *argument],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "of at least 0, got" in result.stderr, result.stderr


def test_agentcast_serve_limits_per_ip_by_default_only_on_a_public_host() -> None:
    """On loopback every client of a local reverse proxy or bench shares one address: no
    per-IP limit unless asked for; a public --host gets 256 connections an address."""

    async def connections_until_refused(url: str, most: int) -> tuple[int, int | None]:
        async with contextlib.AsyncExitStack() as open_ones:
            for count in range(most):
                try:
                    await open_ones.enter_async_context(websockets.connect(url))
                except websockets.InvalidStatus as refused:
                    return count, int(refused.response.status_code)
            return most, None

    with serving() as (_, port):
        assert run(connections_until_refused(f"ws://127.0.0.1:{port}", 300)) == (300, None)
    with serving("--insecure", host="0.0.0.0") as (_, port):
        assert run(connections_until_refused(f"ws://127.0.0.1:{port}", 300)) == (256, 503)
