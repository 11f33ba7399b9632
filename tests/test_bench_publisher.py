"""The publisher of the ``agents`` and ``tokens`` workloads: every agent's events, each once
and in order, none before its turn on the absolute schedule, each stamped as it is handed
to the server (timings never asserted, only their order where the code guarantees it)."""

from __future__ import annotations

import time
from typing import Any

from agentcast.bench.publisher import agents_paced

AGENTS = [f"agent-{k}" for k in range(7)]
EARLY = 1e-9  # seconds: float rounding of the schedule, never a real wait


class Recording:
    """A peer that keeps each event with the monotonic time it was handed over."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], float]] = []

    def publish_to(self, agent: str, obj: Any) -> None:
        self.events.append((agent, obj, time.monotonic()))


def test_each_agent_publishes_its_count_in_turn_stamped_at_publish() -> None:
    count, rate = 6, 40.0  # events per agent, per agent per second: 280 events/s in all
    peer = Recording()
    started = agents_paced(peer, AGENTS, count, 60, rate)
    turns = [(AGENTS[j % len(AGENTS)], j // len(AGENTS)) for j in range(count * len(AGENTS))]
    assert [(agent, event["agent"], event["n"]) for agent, event, _ in peer.events] == [
        (agent, agent, n) for agent, n in turns
    ]
    step = 1.0 / (rate * len(AGENTS))
    handed_before = started
    for j, (_, event, handed) in enumerate(peer.events):
        assert event["t"] >= started + j * step - EARLY  # not before its turn
        assert handed_before <= event["t"] <= handed  # stamped one by one, as published
        handed_before = handed
