"""Start, stop and the slow-consumer policy over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable

import orjson
import pytest

from agentcast import Broadcaster
from clients import parse_frames, picows_clients, raw_upgrade, run, wait_for


def test_start_on_a_busy_port_raises_in_the_caller() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        hub = Broadcaster(port=taken.getsockname()[1])
        with pytest.raises(OSError, match="address already in use"):
            hub.start()
        assert not hub.running
    assert not [t for t in threading.enumerate() if t.name.startswith("agentcast")]


def test_busy_port_of_a_running_hub(hub: Broadcaster) -> None:
    with pytest.raises(OSError):
        Broadcaster(port=hub.port).start()
    hub.publish({"still": "serving"})


def test_publish_before_start_and_after_stop_is_a_clear_error() -> None:
    hub = Broadcaster(port=0)
    with pytest.raises(RuntimeError, match="not running"):
        hub.publish({"x": 1})
    with hub:
        hub.publish({"x": 1})
    with pytest.raises(RuntimeError, match="not running"):
        hub.publish({"x": 1})
    hub.stop()  # idempotent


BACKLOG = 1_000  # queued, unwritten, when stop() is called: 1,000 clients x 230 KB


def test_stop_with_1000_clients_sends_each_its_backlog_then_1001(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Broadcaster(port=0).start()

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 1000) as clients:
            await wait_for(lambda: hub.client_count == 1000, 30, "1000 clients")
            for i in range(BACKLOG):
                hub.publish({"i": i, "pad": "x" * 200})
            await asyncio.get_running_loop().run_in_executor(None, hub.stop, 30.0)
            await wait_for(lambda: all(c.close_code is not None for c in clients), 10, "closes")
            assert {c.close_code for c in clients} == {1001}
            expected = [orjson.dumps({"i": i, "pad": "x" * 200}) for i in range(BACKLOG)]
            assert all(c.messages == expected for c in clients)

    run(scenario())
    # The drain saw every client close; none was left for the deadline's abort.
    assert not [r for r in caplog.records if "aborting" in r.getMessage()]
    assert not hub.running
    assert not [t for t in threading.enumerate() if t.name.startswith("agentcast")]


def test_restart_after_stop(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory()
    hub.stop()
    hub.start()
    assert hub.running

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 1) as (client,):
            await wait_for(lambda: hub.client_count == 1)
            hub.publish({"again": True})
            await wait_for(lambda: client.messages == [b'{"again":true}'])

    run(scenario())


def test_stalled_client_is_closed_1013_others_get_everything(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    budget = 1 << 20
    messages = 6_000
    hub = hub_factory(client_budget=budget, close_grace=30.0)
    stalled = raw_upgrade(hub.port, rcvbuf=4096)

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 100) as readers:
            await wait_for(lambda: hub.client_count == 101, what="101 clients")
            for seq in range(messages):
                hub.publish({"seq": seq, "pad": "x" * 1000})
                if seq % 100 == 99:  # a stream the readers can follow; the stalled one cannot
                    await asyncio.sleep(0.002)
            await wait_for(lambda: hub.stats()["dropped_clients"] == 1, 30, "the drop")
            await wait_for(lambda: all(len(r.messages) == messages for r in readers), 30)
            for reader in readers:
                assert [orjson.loads(m)["seq"] for m in reader.messages] == list(range(messages))
            assert all(r.close_code is None for r in readers)

    try:
        run(scenario())
    except BaseException:
        stalled.close()
        raise
    stalled.settimeout(10)
    data = b""
    while not data.endswith(b"slow consumer: over byte budget"):  # the close frame's reason
        chunk = stalled.recv(1 << 20)
        assert chunk, "closed before the close frame arrived"
        data += chunk
    stalled.close()
    frames = parse_frames(data)
    opcode, payload = frames[-1]
    assert opcode == 0x8
    assert int.from_bytes(payload[:2], "big") == 1013
    assert b"budget" in payload[2:]
    received = [orjson.loads(p)["seq"] for op, p in frames[:-1]]
    assert received == list(range(len(received)))
    assert budget < len(data) and len(received) < messages
    run(wait_for(lambda: hub.client_count == 0, what="the stalled client removed"))
    assert hub.stats()["dropped_clients"] == 1  # the stalled one only, never a reader


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ping_interval": 1.0, "ping_timeout": 2.0}, "ping_timeout must not exceed"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"close_grace": -1}, "close_grace"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Broadcaster(port=0, **kwargs)


def test_start_stop_cycles_leak_no_thread_or_fd() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before_fds, before_threads = open_fds(), threading.active_count()
    for _ in range(3):
        hub = Broadcaster(port=0).start()

        async def scenario(hub: Broadcaster = hub) -> None:
            async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 20):
                await wait_for(lambda: hub.client_count == 20)
                hub.publish({"x": 1})

        run(scenario())
        hub.stop()
    assert threading.active_count() == before_threads
    assert open_fds() == before_fds


def test_flush_interval_paces_write_rounds(hub_factory: Callable[..., Broadcaster]) -> None:
    interval = 0.05
    hub = hub_factory(flush_interval=interval)

    async def scenario() -> float:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 5) as clients:
            await wait_for(lambda: hub.client_count == 5)
            started = time.monotonic()
            for i in range(100):
                hub.publish({"i": i})
                await asyncio.sleep(0.005)
            await wait_for(lambda: all(len(c.messages) == 100 for c in clients))
            return time.monotonic() - started

    elapsed = run(scenario())
    rounds = hub.stats()["ticks"]
    assert rounds <= elapsed / interval + 2, (rounds, elapsed)
    assert hub.stats()["deliveries"] == 500


def test_skip_policy_stalled_client_gets_a_gap_notice_others_everything(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    messages = 10_000
    hub = hub_factory(client_budget=1 << 20, slow_consumer="skip", history_size=0)
    stalled = raw_upgrade(hub.port, rcvbuf=4096)

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 99) as readers:
            await wait_for(lambda: hub.client_count == 100, what="100 clients")
            for cid in hub._thread.call(hub._core.client_ids):
                hub.subscribe(cid, "agent")
            for seq in range(messages):
                hub.publish({"i": seq, "pad": "x" * 800}, "agent")
                if seq % 100 == 99:  # a stream the readers can follow; the stalled one cannot
                    await asyncio.sleep(0.002)
            await wait_for(lambda: all(len(r.messages) == messages for r in readers), 60)
            for reader in readers:
                assert [orjson.loads(m)["seq"] for m in reader.messages] == list(
                    range(1, messages + 1)
                )
            assert hub.stats()["skip_episodes"] == 1

    try:
        run(scenario())
    except BaseException:
        stalled.close()
        raise
    stalled.settimeout(0.5)
    data = b""
    with contextlib.suppress(TimeoutError):
        while chunk := stalled.recv(1 << 20):  # drain what was sent before the skip
            data += chunk
    hub.publish({"marker": True}, "agent")  # the next message brings the gap notice
    stalled.settimeout(10)
    while b'"marker"' not in data:
        data += stalled.recv(1 << 20)
    stalled.close()
    frames = [orjson.loads(payload) for _, payload in parse_frames(data)]
    notices = [f for f in frames if f.get("code") == "skipped"]
    assert len(notices) == 1
    (gap,) = notices[0]["ranges"]
    delivered = [f["seq"] for f in frames if "seq" in f]
    missed = list(range(gap["from_seq"], gap["to_seq"] + 1))
    assert sorted(delivered + missed) == list(range(1, messages + 2))
    assert delivered[-1] == messages + 1 and notices[0]["skipped"] == len(missed)
    assert hub.stats()["dropped_clients"] == 0
