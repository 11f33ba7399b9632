"""Micro-benchmarks of the compiled core alone: no sockets, no loop thread.

``MemorySink(keep=False)`` only counts bytes, so ``tick`` measures the core's
own work: draining the queue, framing once per group, staging one write per
client.
"""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from agentcast._ext import FanoutCore, MemorySink, build_frame
from agentcast.loadgen.messages import MESSAGE_BYTES, message

PAYLOAD = orjson.dumps(message(0))
FRAME_BYTES = len(build_frame(PAYLOAD))
TICK_MESSAGES = 64
TICK_CLIENTS = 1000


def _noop(*_: object) -> None:
    """Wake-ups and callbacks go nowhere: the benchmark calls ``tick`` itself."""


def make_core() -> FanoutCore:
    """A core on a stand-in loop: only ``time``, ``call_soon`` and ``call_soon_threadsafe``."""
    loop = SimpleNamespace(call_soon=_noop, call_soon_threadsafe=_noop, time=lambda: 0.0)
    return FanoutCore(loop, wake=_noop)


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
    core = make_core()
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
