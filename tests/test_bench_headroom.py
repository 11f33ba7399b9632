"""The headroom workload's idle baseline: the faster of the readings before and after the
busy window, so that outside load slowing one reading cannot push headroom past 100 %."""

from __future__ import annotations

import pytest

from agentcast.bench.workloads import headroom_share


@pytest.mark.parametrize("slowed", ["before", "after"])
def test_headroom_is_over_the_faster_idle_reading(slowed: str) -> None:
    busy, idle, slowed_idle = 50.0, 100.0, 25.0  # the slowed reading alone would say 200 %
    before, after = (slowed_idle, idle) if slowed == "before" else (idle, slowed_idle)
    assert headroom_share(busy, before, after) == pytest.approx(0.5)


def test_equal_idle_readings_give_busy_over_idle() -> None:
    assert headroom_share(30.0, 120.0, 120.0) == pytest.approx(0.25)
