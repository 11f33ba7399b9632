"""Delivery guarantees under concurrency, and a live server under hostile input."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable

import orjson
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from picows import WSMsgType, ws_connect

from agentcast import Broadcaster
from agentcast.app import AgentServer
from clients import (
    DEMO_STEP,
    Collector,
    memgpt_exchange,
    picows_clients,
    run,
    user_message,
    wait_for,
)

THREADS = 8
PER_THREAD = 5_000


def test_seq_is_contiguous_and_each_thread_ordered(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(history_size=0)
    ids: list[int] = []
    hub_ready = threading.Event()

    def publisher(thread: int) -> None:
        hub_ready.wait(10)
        for i in range(PER_THREAD):
            hub.publish({"t": thread, "i": i}, channel="one")

    async def scenario() -> list[list[dict]]:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 50) as clients:
            await wait_for(lambda: hub.client_count == 50)
            ids.extend(hub._thread.call(hub._core.client_ids))
            for cid in ids:
                hub.subscribe(cid, "one")
            hub_ready.set()
            threads = [threading.Thread(target=publisher, args=(t,)) for t in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total = THREADS * PER_THREAD
            await wait_for(lambda: all(len(c.messages) == total for c in clients), 60, "all")
            return [[orjson.loads(m) for m in c.messages] for c in clients]

    for stream in run(scenario()):
        assert [m["seq"] for m in stream] == list(range(1, THREADS * PER_THREAD + 1))
        for thread in range(THREADS):
            assert [m["i"] for m in stream if m["t"] == thread] == list(range(PER_THREAD))


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def _json(value: object) -> bytes:
    return json.dumps(value).encode()  # stdlib: any int size, so the server sees those too


frames = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    ).map(_json),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["user_message", "command", "subscribe", "unsubscribe", "x"])},
        optional={
            "message": st.one_of(st.text(max_size=30), st.integers()),
            "agent_id": st.one_of(st.text(max_size=10), st.none(), st.integers()),
            "since": st.one_of(st.integers(-5, 10**20), st.text(max_size=3)),
            "command": st.text(max_size=12),
            "config": st.one_of(st.dictionaries(st.text(max_size=5), st.integers()), st.integers()),
        },
    ).map(_json),
)
raw_chunks = st.binary(min_size=1, max_size=64)


def test_hostile_input_never_hurts_the_control_client() -> None:
    """Random bytes, JSON, truncated/oversized/fragmented frames over many connections."""
    server = AgentServer(port=0, max_message_size=4096).start()
    url = f"ws://127.0.0.1:{server.port}/"
    rss: list[int] = []
    try:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(frames, min_size=1, max_size=8), raw_chunks, st.booleans())
        def attack(payloads: list[bytes], garbage: bytes, oversize: bool) -> None:
            run(_attack(url, payloads, garbage, oversize, server))
            rss.append(_rss_kib())

        attack()
    finally:
        server.stop()
    # Bounded memory: the second half of the run did not keep growing like the first.
    half = len(rss) // 2
    assert max(rss[half:]) - max(rss[:half]) < 20 * 1024, rss


async def _attack(
    url: str, payloads: list[bytes], garbage: bytes, oversize: bool, server: AgentServer
) -> None:
    host, port = url.split("//")[1].rstrip("/").split(":")
    # 1. raw garbage on a TCP connection that never completes a handshake
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(garbage)
    await writer.drain()
    writer.close()
    # 2. a picows client sending arbitrary text/binary frames, fragments and an oversize one
    transport, _ = await ws_connect(Collector, url)
    for payload in payloads:
        transport.send(WSMsgType.TEXT, payload[: len(payload) // 2], fin=False)
        transport.send(WSMsgType.CONTINUATION, payload[len(payload) // 2 :], fin=True)
        transport.send(WSMsgType.BINARY, payload)
        transport.send(WSMsgType.TEXT, payload)
    if oversize:
        transport.send(WSMsgType.TEXT, b"x" * 5000)
    transport.disconnect()
    await transport.wait_disconnected()
    # 3. the control client is served correctly throughout
    async with websockets.connect(url) as control:
        replies = await asyncio.wait_for(memgpt_exchange(control, user_message("ok?", "c")), 5)
        assert [r["type"] for r in replies] == DEMO_STEP
    await wait_for(lambda: server.hub.client_count == 0, 5, "attackers gone")
