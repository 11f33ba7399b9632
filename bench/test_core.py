"""Micro-benchmarks of the compiled core alone: no sockets, no loop thread.

``MemorySink(keep=False)`` only counts bytes, so ``tick`` measures the core's
own work: draining the queue, framing once per group, staging one write per
client.
"""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from agentcast._ext import FanoutCore, MemorySink, build_frame
from agentcast.bench.messages import MESSAGE_BYTES, message
from agentcast.bench.workloads import agents_shape

PAYLOAD = orjson.dumps(message(0))
FRAME_BYTES = len(build_frame(PAYLOAD))
TICK_MESSAGES = 64
TICK_CLIENTS = 1000
CHANNELS = 100
CHANNEL_CLIENTS = 10


def _noop(*_: object) -> None:
    """Wake-ups and callbacks go nowhere: the benchmark calls ``tick`` itself."""


def make_core(**options: object) -> FanoutCore:
    """A core on a stand-in loop: only ``time``, ``call_soon`` and ``call_soon_threadsafe``."""
    loop = SimpleNamespace(call_soon=_noop, call_soon_threadsafe=_noop, time=lambda: 0.0)
    return FanoutCore(loop, wake=_noop, **options)


def test_build_frame(benchmark):
    assert len(PAYLOAD) == MESSAGE_BYTES
    frame = benchmark.pedantic(
        build_frame, args=(PAYLOAD,), rounds=200, iterations=1000, warmup_rounds=5
    )
    assert frame[:4] == b"\x81\x7e" + MESSAGE_BYTES.to_bytes(2, "big")  # 16-bit length


def test_publish_json_enqueue(benchmark):
    core = make_core()
    benchmark.pedantic(
        core.publish_json,
        args=(PAYLOAD,),
        teardown=lambda *_: core.flush(),  # keep the queue from growing across rounds
        rounds=200,
        iterations=1000,
        warmup_rounds=5,
    )


def test_tick_fanout(benchmark):
    """64 broadcasts to 1,000 clients: 64,000 deliveries, no channel, no seq, no history."""
    core = make_core(max_batch_bytes=1 << 30)
    sinks = [MemorySink(keep=False) for _ in range(TICK_CLIENTS)]
    for sink in sinks:
        core.add_client(sink)

    def queue_messages() -> None:
        for _ in range(TICK_MESSAGES):
            core.publish_json(PAYLOAD)

    benchmark.pedantic(core.tick, setup=queue_messages, rounds=300, warmup_rounds=10)
    assert core.stats()["pending"] == 0
    assert all(sink.received == sink.writes * TICK_MESSAGES * FRAME_BYTES for sink in sinks)
    benchmark.extra_info["deliveries_per_tick"] = TICK_CLIENTS * TICK_MESSAGES


@pytest.mark.parametrize("features", ["off", "on"])
def test_tick_channel_features(benchmark, features):
    """What channels, ``seq`` and history cost the core per message.

    Both sides route 6,400 messages to 10 clients each (64,000 deliveries a
    tick). "off": 10 clients, plain broadcasts. "on": 100 channels of 10
    clients each, every message stamped with its channel's ``seq`` and kept in
    its history (the defaults), 64 per channel.
    """
    core = make_core(max_batch_bytes=1 << 30)
    clients = CHANNEL_CLIENTS * (CHANNELS if features == "on" else 1)
    sinks = [MemorySink(keep=False) for _ in range(clients)]
    for index, sink in enumerate(sinks):
        client_id = core.add_client(sink)
        if features == "on":
            core.subscribe(client_id, index % CHANNELS)
    core.flush()
    targets = list(range(CHANNELS)) if features == "on" else [None] * CHANNELS

    def queue_messages() -> None:
        for _ in range(TICK_MESSAGES):
            for channel in targets:
                core.publish_json(PAYLOAD, channel)

    benchmark.pedantic(core.tick, setup=queue_messages, rounds=300, warmup_rounds=10)
    assert core.stats()["pending"] == 0
    assert sum(sink.writes for sink in sinks) == clients * 310
    if features == "on":
        assert core.channel_info(0)["last_seq"] == 310 * TICK_MESSAGES
    benchmark.extra_info["deliveries_per_tick"] = CHANNELS * TICK_MESSAGES * CHANNEL_CLIENTS


AGENTS_SHAPE = agents_shape(2000, 100)  # 1,000 agents of 1 watcher, 10 of 100
AGENTS_TICK = 20  # events a tick: 20,000 events/s drained once a millisecond


def test_tick_agents(benchmark):
    """The ``agents`` workload's tick: 20 events, each to its own agent's channel (the
    next 20 of 1,010 in turn), 2,000 clients; a tick's cost should follow the events it
    carries, not the groups that exist."""
    core = make_core()
    channels = [k for k, watchers in enumerate(AGENTS_SHAPE) for _ in range(watchers)]
    sinks = [MemorySink(keep=False) for _ in channels]
    for sink, channel in zip(sinks, channels, strict=True):
        core.subscribe(core.add_client(sink), channel)
    core.flush()
    turn = iter(range(1 << 62))

    def queue_messages() -> None:
        for _ in range(AGENTS_TICK):
            core.publish_json(PAYLOAD, next(turn) % len(AGENTS_SHAPE))

    benchmark.pedantic(core.tick, setup=queue_messages, rounds=3000, warmup_rounds=100)
    assert core.stats()["pending"] == 0
    benchmark.extra_info["events_per_tick"] = AGENTS_TICK
