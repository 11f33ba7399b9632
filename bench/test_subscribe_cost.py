"""What one subscribe costs the loop thread as the client holds more subscriptions.

One client holds ``held`` channels; each round subscribes it to one more and
applies it (``tick``), then takes it back out of the round (teardown). Before
the cap and the solo groups, a subscribe copied the client's channel set and
rebuilt its group: its cost grew with ``held``.
"""

from __future__ import annotations

import itertools

import pytest

from agentcast._ext import MemorySink
from test_core import make_core


@pytest.mark.parametrize("held", [10, 128, 1000])
def test_subscribe_cost(benchmark, held):
    core = make_core(max_subscriptions=None)
    client = core.add_client(MemorySink(keep=False))
    for channel in range(held):
        core.subscribe(client, f"agent-{channel}")
    core.flush()
    extra = itertools.count()
    current: list[str] = []

    def subscribe_one() -> None:
        current.append(f"extra-{next(extra)}")
        core.subscribe(client, current[-1])
        core.tick()

    def unsubscribe_it(*_: object) -> None:
        core.unsubscribe(client, current.pop())
        core.flush()

    benchmark.pedantic(subscribe_one, teardown=unsubscribe_it, rounds=500, warmup_rounds=10)
    assert core.stats()["groups"] == 1
    benchmark.extra_info["held"] = held
