"""The slow-consumer policy: a client in ``skip`` mode misses channel frames, never the
frames addressed to it alone (acks, ``agent_response_end``, ``forbidden``, notices); a
fast client that a burst puts behind for a moment loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import uvloop
import websockets

from agentcast import Broadcaster
from agentcast._ext import FanoutCore, MemorySink
from agentcast._slow import TRY_AGAIN_LATER
from clients import (
    drain,
    frames_of,
    parse_frames,
    raw_upgrade,
    run,
    subscribed,
    wait_for,
    websockets_clients,
)
from stream_checks import NATIVE

BUDGET = 1000


def skipping_client(loop: uvloop.Loop) -> tuple[FanoutCore, MemorySink, int]:
    """A core in skip mode and a client of channel "a" that is skipping now."""
    core = FanoutCore(loop, wake=lambda _: None, client_budget=BUDGET, slow_consumer="skip")
    sink = MemorySink()
    client = core.add_client(sink)
    core.subscribe(client, "a")
    sink.backlog = 5 * BUDGET  # its transport holds more than the budget
    core.publish_json(b'{"n":1}', "a")
    drain(core)  # written (not yet known to be behind), then it starts skipping
    assert core.stats()["skip_episodes"] == 1
    return core, sink, client


def test_direct_frames_reach_a_skipping_client_in_order(loop: uvloop.Loop) -> None:
    core, sink, client = skipping_client(loop)
    core.publish_json(b'{"n":2}', "a")
    core.send_json(client, b'{"type":"agent_response_end"}')
    core.publish_json(b'{"n":3}', "a")
    core.subscribe(client, "b", ack=b'{"ack":"b"}')
    drain(core)  # still behind: channel frames are skipped, the direct ones are not
    core.publish_json(b'{"n":4}', "a")
    drain(core)
    sink.backlog = 0  # drained
    core.publish_json(b'{"n":5}', "a")
    drain(core)
    frames = [orjson.loads(f) for f in frames_of(sink)]
    assert [f.get("n") or f.get("type") or f.get("ack") for f in frames] == [
        1,
        "agent_response_end",
        "b",
        "server_error",
        5,
    ]
    notice = frames[3]
    assert notice["code"] == "skipped" and notice["skipped"] == 3
    assert notice["ranges"] == [{"agent_id": "a", "from_seq": 2, "to_seq": 4}]
    assert sink.close_code == 0
    stats = core.stats()
    assert (stats["skipped_frames"], stats["dropped_clients"]) == (3, 0)


def test_a_skipping_client_whose_direct_frames_alone_overflow_the_budget_is_closed(
    loop: uvloop.Loop,
) -> None:
    core, sink, client = skipping_client(loop)
    core.send_json(client, b'{"ack":"%s"}' % (b"x" * (BUDGET // 2)))
    drain(core)
    assert sink.close_code == 0  # within the budget: sent
    core.send_json(client, b'{"ack":"%s"}' % (b"x" * (BUDGET // 2)))
    drain(core)
    assert (sink.close_code, core.stats()["dropped_clients"]) == (TRY_AGAIN_LATER, 1)


def test_a_stalled_reader_in_skip_mode_gets_the_direct_frame_sent_while_it_skips(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(client_budget=64 * 1024, slow_consumer="skip", history_size=0)
    stalled = raw_upgrade(hub.port, rcvbuf=4096)
    try:
        run(wait_for(lambda: hub.client_count == 1, what="the stalled client registered"))
        (client,) = hub._thread.call(hub._core.client_ids)
        subscribed(hub, client, "agent")
        for _ in range(1000):  # ~100 MB at most, far beyond any socket buffer
            if hub.stats()["skip_episodes"]:
                break
            for _ in range(100):
                hub.publish({"pad": "x" * 1000}, "agent")
            run(wait_for(lambda: hub.stats()["pending"] == 0))
        assert hub.stats()["skip_episodes"] == 1
        hub.send(client, {"type": "agent_response_end"})
        run(wait_for(lambda: hub.stats()["pending"] == 0))
        stalled.settimeout(10)
        data = b""
        while b'"agent_response_end"' not in data:
            chunk = stalled.recv(1 << 20)
            assert chunk, "closed before the direct frame arrived"
            data += chunk
    finally:
        stalled.close()
    types = [orjson.loads(payload).get("type") for _, payload in parse_frames(data)]
    assert types[-1] == "agent_response_end"
    assert hub.stats()["dropped_clients"] == 0


def test_a_burst_past_lag_threshold_reaches_every_fast_client_whole_and_in_order(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    # The kernel holds 16 KiB unsent and a transport past 4 KiB lags (native-protocol
    # clients only): the burst (2.4 MB in all) puts every client behind for a moment.
    hub = hub_factory(notsent_lowat=16 * 1024, lag_threshold=4 * 1024)
    payloads = [
        orjson.dumps({"n": n, "pad": "x" * size})
        for n, size in enumerate([5_000, 40_000, 300_000] * 7)
    ]

    async def read(client: websockets.ClientConnection) -> list[bytes]:
        return [await client.recv(decode=False) for _ in payloads]

    async def burst() -> list[list[bytes]]:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/{NATIVE}", 8) as clients:
            await wait_for(lambda: hub.client_count == 8, what="the clients registered")
            for payload in payloads:
                hub.publish_json(payload)
            received = await asyncio.gather(*(read(client) for client in clients))
            assert all(client.state is websockets.State.OPEN for client in clients)
            return received

    assert run(burst()) == [payloads] * 8
    stats = hub.stats()
    assert stats["lag_episodes"] >= 1, "no client lagged: the burst tested nothing"
    assert (stats["dropped_clients"], stats["skipped_frames"]) == (0, 0)
