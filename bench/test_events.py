"""What agent events cost the core against plain messages of the same size, same run.

A tick of 64 token deltas to 1,000 watchers of one channel: as ``publish_json`` (the
caller serialized it; one frame for all) and as ``publish_event`` (numbered, observed
into the open run, encoded once per encoding present, kept): with one encoding among the
watchers and with two (500 native, 500 MemGPT, who get nothing for a delta). The ratio of
the medians is the price of the event model per event, paid once per event, not per
watcher.
"""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from agentcast._ext import FanoutCore, MemorySink
from agentcast.streams.codec import EventCodec
from agentcast.streams.encodings import MEMGPT, NATIVE

WATCHERS = 1000
TICK_DELTAS = 64
DELTA = "token "  # 3-20 B is what a model streams
EVENT = {"type": "message_delta", "message_id": "msg-1", "delta": DELTA}
PAYLOAD = orjson.dumps({"type": "message_delta", "channel": "a", "seq": 12345, **EVENT})


def _noop(*_: object) -> None:
    """Wake-ups and callbacks go nowhere: the benchmark calls ``tick`` itself."""


def make_core(encodings: list[int]) -> tuple[FanoutCore, list[MemorySink]]:
    loop = SimpleNamespace(
        call_soon=_noop, call_soon_threadsafe=_noop, call_later=_noop, time=lambda: 0.0
    )
    core = FanoutCore(loop, wake=_noop, codec=EventCodec(), max_batch_bytes=1 << 30)
    sinks = [MemorySink(keep=False) for _ in range(WATCHERS)]
    for index, sink in enumerate(sinks):
        core.subscribe(core.add_client(sink, encodings[index % len(encodings)]), "a")
    core.publish_event({"type": "run_start", "run_id": "r"}, "a")
    start = {"type": "message_start", "message_id": "msg-1", "role": "assistant", "kind": "text"}
    core.publish_event(start, "a")
    core.flush()
    return core, sinks


@pytest.mark.parametrize("kind", ["publish_json", "event_native", "event_two_encodings"])
def test_tick_token_deltas(benchmark, kind):
    encodings = [NATIVE, MEMGPT] if kind == "event_two_encodings" else [NATIVE]
    core, sinks = make_core(encodings)

    def queue() -> None:
        for _ in range(TICK_DELTAS):
            if kind == "publish_json":
                core.publish_json(PAYLOAD, "a")
            else:
                core.publish_event(dict(EVENT), "a")

    benchmark.pedantic(core.tick, setup=queue, rounds=300, warmup_rounds=10)
    assert core.stats()["pending"] == 0
    native = sinks[0]
    assert native.writes == 311  # the start, then one write a tick
    if kind == "event_two_encodings":
        assert sinks[1].writes == 0  # MemGPT watchers get nothing for a delta
    benchmark.extra_info["deliveries_per_tick"] = TICK_DELTAS * WATCHERS // len(encodings)
