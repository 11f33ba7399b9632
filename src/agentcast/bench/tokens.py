"""``tokens``: agents streaming token deltas to their watchers, some of whom lag (issue 22).

``clients // watchers`` agents each stream runs of messages (``token_script``: deltas of
3-20 bytes of text) at ``token_rate`` events/s for ``duration`` seconds to ``watchers``
native-protocol watchers of their own (``token_watchers``). Every round is two runs, each
with a fresh server, each first in every other round: the keepers alone, and the same
keepers with ``laggards`` (a share of each agent's watchers, spread among them) that read
at ``laggard_pace`` times their stream's bytes a second until ``LAGGARD_TAIL`` s after the
last publish, then at full speed.

What a round reports (``Round`` keys): every watcher's text checked against what was
produced (``text_faults``: watchers whose assembled text differs, merged deltas included),
``seq`` and boundaries exact (``stream_faults``), ``closes`` (must be 0), the keepers' delta
latency with the laggards (``p50_ms``, ``p99_ms``) and without (``alone_p99_ms``, and
``p99_ratio``), what the laggards were sent (``laggard_frames``, ``laggard_bytes``) against
what one frame per event would have been (``unmerged_*``, what a keeper of the same agent
got), their merged frames, and the server process's CPU per frame delivered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentcast.bench.harness import CpuPlan, wait_until
from agentcast.bench.progress import Prefixed, Progress, tally
from agentcast.bench.server_process import ServerProcess
from agentcast.bench.token_script import agent_stream, stream_bytes, stream_texts
from agentcast.bench.token_watchers import Outcome, Stream, WatcherFleet

if TYPE_CHECKING:
    from agentcast.bench.workloads import Round, Settings

LAGGARD_TAIL = 2.0  # seconds laggards keep their pace after the last publish
DRAIN_GRACE = 20.0  # seconds after that for every watcher to have everything
SERVER_GRACE = 30.0  # seconds a server command may take beyond its own length
CONNECT_TIMEOUT = 120.0


def tokens_shape(clients: int, watchers: int) -> list[int]:
    """``clients // watchers`` agents of ``watchers`` watchers (the last takes the rest)."""
    groups = max(1, clients // watchers)
    return [watchers] * (groups - 1) + [clients - watchers * (groups - 1)]


def laggard_places(watchers: int, share: float) -> set[int]:
    """Which of an agent's ``watchers`` (in connection order) lag: ``round(watchers *
    share)`` of them (at least one for a share above 0), spread evenly, so that none is
    always written first or last."""
    count = min(watchers, max(round(watchers * share), 1 if share > 0 else 0))
    return {int((k + 0.5) * watchers / count) for k in range(count)}


def plan(shape: list[int], share: float) -> list[tuple[str, bool]]:
    """(agent, laggard) per connection, in connection order: agent by agent, agent k with
    ``shape[k]`` watchers, ``laggard_places`` of them lagging."""
    return [
        (f"agent-{k}", w in places)
        for k, watchers in enumerate(shape)
        for places in [laggard_places(watchers, share)]
        for w in range(watchers)
    ]


@dataclass(frozen=True)
class _Run:
    outcome: Outcome
    window: float  # seconds from the first publish to the last publish
    server_cpu: float  # the server process's CPU seconds from the first publish to the end
    stats: dict[str, int]  # the server's own counters (agentcast's), else empty


def _run(
    peer: str,
    connections: list[tuple[str, bool]],
    settings: Settings,
    seed: int,
    cpus: CpuPlan,
    progress: Progress,
) -> _Run:
    """One run with a fresh server: connect, publish, wait for everything, check."""
    agents = list(dict.fromkeys(agent for agent, _ in connections))
    at_least = max(1, round(settings.token_rate * settings.duration))
    streams = {}
    for agent in agents:
        events = agent_stream(agent, at_least, seed)
        rate = stream_bytes(events, agent) / len(events) * settings.token_rate
        streams[agent] = Stream(at_least, seed, rate * settings.laggard_pace)
    server = ServerProcess(peer, cpus.server)
    fleet: WatcherFleet | None = None
    progress.phase("starting server")
    server.start()
    try:
        server.call("route", [agent for agent, _ in connections], timeout=SERVER_GRACE)
        connected = tally(progress, "connecting", len(connections))
        fleet = WatcherFleet(server.port, connections, streams, cpus.receivers).start(connected)
        wait_until(
            lambda: server.client_count == len(connections),
            CONNECT_TIMEOUT,
            f"{peer} to register {len(connections)} watchers",
        )
        progress.phase("streaming")
        fleet.mark()
        cpu_before = server.call("cpu_seconds", timeout=SERVER_GRACE)
        published: dict[str, Any] = server.call(
            "tokens_paced",
            agents,
            at_least,
            settings.token_rate,
            seed,
            timeout=settings.duration * 2 + SERVER_GRACE,
        )
        _check_produced(published["texts"], agents, at_least, seed)
        fleet.unthrottle_at(published["ended"] + LAGGARD_TAIL)
        progress.phase("draining")
        complete = fleet.wait(published["ended"] + LAGGARD_TAIL + DRAIN_GRACE)
        cpu = server.call("cpu_seconds", timeout=SERVER_GRACE) - cpu_before
        stats = server.call("stats", timeout=SERVER_GRACE)
        progress.phase("checking")
        outcome = fleet.outcome(complete, published["times"])
        for key in ("laggard_done_at", "keeper_done_at"):
            at = outcome.totals.get(key, 0.0)
            outcome.totals[key] = at - published["ended"] if at else math.nan
        return _Run(outcome, published["ended"] - published["started"], cpu, stats)
    finally:
        progress.phase("stopping")
        if fleet is not None:
            fleet.stop()
        server.stop()


def _check_produced(texts: dict[str, dict[str, str]], agents: list[str], at_least: int,
                    seed: int) -> None:  # fmt: skip
    """The watchers check against ``agent_stream``'s texts: the publisher must have produced
    exactly those."""
    for agent in agents:
        if texts[agent] != stream_texts(agent_stream(agent, at_least, seed)):
            raise RuntimeError(f"the publisher produced another stream for {agent}")


def _latency(outcome: Outcome, share: float) -> float:
    return outcome.histogram.percentile(share) / 1e3


def _round(alone: _Run, mixed: _Run) -> Round:
    """One round's figures from its two runs (``alone``: keepers only)."""
    both = (alone.outcome, mixed.outcome)
    totals = mixed.outcome.totals
    frames = totals["keeper_frames"] + totals["laggard_frames"]
    p99, alone_p99 = _latency(mixed.outcome, 0.99), _latency(alone.outcome, 0.99)
    return {
        "laggards": totals["laggards"],
        "p50_ms": _latency(mixed.outcome, 0.5),
        "p90_ms": _latency(mixed.outcome, 0.9),
        "p99_ms": p99,
        "alone_p50_ms": _latency(alone.outcome, 0.5),
        "alone_p90_ms": _latency(alone.outcome, 0.9),
        "alone_p99_ms": alone_p99,
        "p99_ratio": p99 / alone_p99 if alone_p99 else math.nan,
        "worst_keeper_p99_ms": mixed.outcome.worst_keeper_p99_us / 1e3,
        "latency_samples": float(mixed.outcome.histogram.total),
        "text_faults": sum(o.totals["text_faults"] for o in both),
        "stream_faults": sum(o.totals["seq_faults"] for o in both),
        "closes": sum(o.totals["closed"] for o in both),
        "lost": sum(o.totals["incomplete"] for o in both),
        "keeper_merged": sum(o.totals["keeper_merged"] for o in both),
        "laggard_frames": totals["laggard_frames"],
        "unmerged_frames": mixed.outcome.unmerged_frames,
        "laggard_bytes": totals["laggard_bytes"],
        "unmerged_bytes": mixed.outcome.unmerged_bytes,
        "frames_share": totals["laggard_frames"] / mixed.outcome.unmerged_frames
        if mixed.outcome.unmerged_frames
        else math.nan,
        "bytes_share": totals["laggard_bytes"] / mixed.outcome.unmerged_bytes
        if mixed.outcome.unmerged_bytes
        else math.nan,
        "laggard_merged": totals["laggard_merged"],
        "merged_deltas": float(mixed.stats.get("merged_deltas", math.nan)),
        "lag_episodes": float(mixed.stats.get("lag_episodes", math.nan)),
        "laggard_done_s": totals["laggard_done_at"],
        "keeper_done_s": totals["keeper_done_at"],
        "deliveries_per_s": frames / mixed.window,
        "process_ns": mixed.server_cpu / max(frames, 1) * 1e9,
        "alone_process_ns": alone.server_cpu / max(alone.outcome.totals["keeper_frames"], 1) * 1e9,
        "server_cpu": mixed.server_cpu / mixed.window,
        "receiver_cpu": max(o.receiver_cpu for o in both),
    }


def tokens(
    peer: str, clients: int, settings: Settings, cpus: CpuPlan, progress: Progress
) -> list[Round]:
    """``rounds`` rounds of two runs: the keepers alone and with the laggards (alone first
    in odd rounds, second in even ones)."""
    shape = tokens_shape(clients, settings.watchers)
    everyone = plan(shape, settings.laggards)
    keepers: list[tuple[str, bool]] = [(agent, False) for agent, laggard in everyone if not laggard]
    rounds: list[Round] = []
    for number in range(1, settings.rounds + 1):
        label = f"round {number}/{settings.rounds}"

        def alone_run(number: int = number, label: str = label) -> _Run:
            return _run(peer, keepers, settings, number, cpus, Prefixed(progress, label + " alone"))

        def mixed_run(number: int = number, label: str = label) -> _Run:
            return _run(peer, everyone, settings, number, cpus, Prefixed(progress, label))

        if number % 2:  # every other round the other way round: no order effect in the ratio
            alone, mixed = alone_run(), mixed_run()
        else:
            mixed, alone = mixed_run(), alone_run()
        rounds.append({"agents": float(len(shape)), **_round(alone, mixed)})
        if rounds[-1]["lost"]:
            break
    return rounds
