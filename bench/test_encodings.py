"""What one more encoding among a tick's watchers costs the core, same run.

A tick of 64 token deltas to 1,000 watchers of one channel (``test_events.make_core``:
``MemorySink`` clients, no I/O), the watchers spread evenly over 1, 2 or 4 encodings:
every event is framed once per encoding present, so the difference between the rows is
that framing (the JSON of the encoding, the framing of its transport), paid once per
event whatever the number of watchers. ``bench/sse.py`` measures the same over sockets.
"""

from __future__ import annotations

import pytest

from agentcast.streams.encodings import encoding_id
from test_events import EVENT, TICK_DELTAS, WATCHERS, make_core

CASES = {
    "1 native": [("agentcast", False)],
    "1 native+sse": [("agentcast", True)],
    "2 native, agui": [("agentcast", False), ("agui", False)],
    "2 native, native+sse": [("agentcast", False), ("agentcast", True)],
    "4 native, agui, aisdk, letta": [
        ("agentcast", False), ("agui", False), ("aisdk", False), ("letta", False)
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_tick_with_encodings(benchmark, case):
    encodings = [encoding_id(protocol, sse) for protocol, sse in CASES[case]]
    core, sinks = make_core(encodings)

    def queue() -> None:
        for _ in range(TICK_DELTAS):
            core.publish_event(dict(EVENT), "a")

    benchmark.pedantic(core.tick, setup=queue, rounds=300, warmup_rounds=10)
    assert core.stats()["pending"] == 0
    for sink in sinks[: len(encodings)]:  # every encoding's watchers got every tick
        assert sink.writes in (310, 311)  # the start, where it has a frame; a write a tick
    benchmark.extra_info["encodings"] = len(encodings)
    benchmark.extra_info["deliveries_per_tick"] = TICK_DELTAS * WATCHERS
