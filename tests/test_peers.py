"""Peers that misbehave at the TCP or WebSocket level: dead, reset, pinging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable

import orjson
import pytest
import websockets
from picows import ws_connect

from agentcast import Broadcaster
from clients import Collector, picows_clients, raw_upgrade, run, wait_for, websockets_clients


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_server_answers_client_pings(hub: Broadcaster) -> None:
    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 1) as (client,):
            latency = await (await client.ping(b"are-you-there"))
            assert latency >= 0

    run(scenario())


def test_peer_that_never_answers_pings_is_closed(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(ping_interval=0.3, ping_timeout=0.2)
    url = f"ws://127.0.0.1:{hub.port}/"

    async def scenario() -> None:
        silent, _ = await ws_connect(Collector, url, enable_auto_pong=False)
        async with websockets_clients(url, 1) as (alive,):
            await wait_for(lambda: hub.client_count == 2)
            started = time.monotonic()
            await wait_for(lambda: hub.client_count == 1, 5, "the silent peer to be dropped")
            assert time.monotonic() - started < 3
            await asyncio.sleep(1.0)  # several ping rounds: the answering peer stays
            assert hub.client_count == 1
            hub.publish({"alive": True})
            assert await alive.recv() == '{"alive":true}'
        await silent.wait_disconnected()

    run(scenario())


def test_reset_peers_mid_burst_leave_the_others_whole(
    hub_factory: Callable[..., Broadcaster], caplog: pytest.LogCaptureFixture
) -> None:
    hub = hub_factory()
    resetters = [raw_upgrade(hub.port, rcvbuf=4096) for _ in range(5)]
    messages = 3_000

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 20) as readers:
            await wait_for(lambda: hub.client_count == 25)
            for seq in range(messages):
                hub.publish({"seq": seq, "pad": "r" * 300})
                if seq == 500:
                    for sock in resetters:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        sock.close()
            await wait_for(lambda: all(len(r.messages) == messages for r in readers), 30)
            for reader in readers:
                assert [orjson.loads(m)["seq"] for m in reader.messages] == list(range(messages))
            await wait_for(lambda: hub.client_count == 20, 5, "resets to be noticed")

    with caplog.at_level(logging.INFO):
        run(scenario())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) <= len(resetters), [r.getMessage() for r in errors]


def test_flooding_client_is_closed_1008_others_unaffected(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    got: list[int] = []
    hub = hub_factory(max_message_rate=50, on_message=lambda cid, data: got.append(cid))

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 2) as (flood, calm):
            for _ in range(500):
                await flood.send("x")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await flood.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            for _ in range(10):
                await calm.send("hello")
            await wait_for(lambda: len(got) >= 60, 5)
            hub.publish({"calm": "served"})
            assert await calm.recv() == '{"calm":"served"}'

    run(scenario())
    assert 50 <= len(got) - 10 <= 60, "the flood got about one bucket of messages through"


def test_connection_that_never_upgrades_is_dropped(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(handshake_timeout=0.3)
    with socket.create_connection(("127.0.0.1", hub.port)) as idle:
        idle.settimeout(5)
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # FIN or RST: either way, gone
            assert idle.recv(1024) == b""
        assert time.monotonic() - started < 3
    assert hub.client_count == 0
