"""SSE against WebSocket per delivery, and two encodings in a tick against one: token deltas
to the watchers of one channel, every phase on the same agentcast server, in the same run.

    python bench/sse.py --watchers 200 --rate 100 --duration 5 --burst 2000 --rounds 3

The server (an agentcast ``Broadcaster``, its defaults but pings) runs in a spawned process
pinned to the first CPU, with its publisher as a thread there (``tokens_paced``, as in the
``tokens`` workload); the watchers in one uvloop process on the second CPU
(``agentcast.bench.stream_watchers``), only on 127.0.0.1. A phase is a set of watchers:

- ``ws``: all native protocol over WebSocket (``/?protocol=agentcast``);
- ``sse``: all native protocol over SSE (``/sse/{channel}?protocol=agentcast``): the same
  JSON, framed as ``id: <seq>`` / ``data: ...`` events;
- ``ws+sse``: half each, the connections taking turns: both transports in the same ticks
  (the server's CPU is not theirs to split; the core writes a tick to one encoding's
  clients, then the next's, so the latency gap here is mostly that order);
- ``ws+agui``: half native, half AG-UI, both over WebSocket: two encodings in each tick
  against ``ws``'s one, the transport unchanged;
- ``ws+agui-sse`` (not by default): half native over WebSocket, half AG-UI over SSE.

The server's CPU is one number for the process, so a transport's cost per delivery is
only its own in a phase where every watcher uses it: the phases run one after the other on
the same server, in an order that turns by one each round. Each phase has two segments on
fresh connections to a fresh channel: ``steady``, ``--rate`` events/s for ``--duration`` s
(latency, p50 and p99 of every delta to every watcher), and ``burst``, ``--burst`` events
as fast as the publisher hands them over (CPU per delivery when the core batches several
events into a write). Every watcher checks its stream whole: every delta's text as
produced, seq with no gap or repeat, every boundary once, an SSE event's ``id:`` its seq.
The run fails (exit 1) on any fault.

Server CPU per delivery is the server process's CPU time (every thread: loop, publisher)
from just before the segment's first publish until every watcher has the last event,
over events x watchers; per event, over events. The publisher's own work (making the
token stream, one ``publish_event`` a delta) is inside both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agentcast.bench.harness import plan_cpus, wait_until
from agentcast.bench.server_process import ServerProcess
from agentcast.bench.stream_watchers import Group, GroupOutcome, StreamWatchers
from agentcast.bench.token_watchers import Stream

SERVER_GRACE = 30.0  # seconds a server command may take beyond its own length
DRAIN_GRACE = 60.0  # seconds after the last publish for every watcher to have everything

PHASES: dict[str, Callable[[int], list[Group]]] = {
    "ws": lambda n: [Group("ws", "agentcast", n)],
    "sse": lambda n: [Group("sse", "agentcast", n)],
    "ws+sse": lambda n: [Group("ws", "agentcast", n - n // 2), Group("sse", "agentcast", n // 2)],
    "ws+agui": lambda n: [Group("ws", "agentcast", n - n // 2), Group("ws", "agui", n // 2)],
    "ws+agui-sse": lambda n: [Group("ws", "agentcast", n - n // 2), Group("sse", "agui", n // 2)],
}
DEFAULT_PHASES = ("ws", "sse", "ws+sse", "ws+agui")


@dataclass
class Segment:
    """One segment of one phase: the server's cost, and each group's outcome."""

    phase: str
    segment: str
    events: int
    watchers: int
    cpu_s: float
    writes: int  # the server's writes (one per watcher per tick with something for it)
    sent: int  # bytes the server wrote
    receiver_cpu: float  # the watcher process's CPU time over wall time
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    faults: int = 0

    @property
    def ns_per_delivery(self) -> float:
        return self.cpu_s / (self.events * self.watchers) * 1e9

    @property
    def bytes_per_delivery(self) -> float:
        return self.sent / (self.events * self.watchers)

    @property
    def us_per_event(self) -> float:
        return self.cpu_s / self.events * 1e6


def run_segment(
    server: ServerProcess,
    watchers: StreamWatchers,
    phase: str,
    segment: str,
    groups: list[Group],
    channel: str,
    events: int,
    rate: float,
    seed: int,
) -> Segment:
    """Connect ``groups`` to a fresh ``channel``, publish, wait for everything, check."""
    websockets = sum(g.count for g in groups if g.transport == "ws")
    server.call("route", [channel] * websockets, timeout=SERVER_GRACE)
    watchers.connect(channel, groups, Stream(events, seed, 0.0), timed=segment == "steady")
    if websockets:  # an SSE watcher is subscribed once it has the ack: connect waited for it
        wait_until(lambda: server.client_count >= websockets, SERVER_GRACE, "the routes")
    stats = server.call("stats", timeout=SERVER_GRACE)
    cpu = server.call("cpu_seconds", timeout=SERVER_GRACE)
    published = server.call(
        "tokens_paced", [channel], events, rate, seed, timeout=events / rate + SERVER_GRACE
    )
    _, receiver_cpu = watchers.wait(published["ended"] + DRAIN_GRACE)
    cpu = server.call("cpu_seconds", timeout=SERVER_GRACE) - cpu
    after = server.call("stats", timeout=SERVER_GRACE)
    outcomes = watchers.report(published["times"][channel])
    watchers.close()
    count = len(published["times"][channel]) // 8
    watching = sum(g.count for g in groups)
    writes, sent = after["writes"] - stats["writes"], after["bytes"] - stats["bytes"]
    result = Segment(phase, segment, count, watching, cpu, writes, sent, receiver_cpu)
    for name, outcome in outcomes.items():
        result.groups[name] = _group_figures(outcome)
        result.faults += outcome.faults
    return result


def _group_figures(outcome: GroupOutcome) -> dict[str, float]:
    return {
        "watchers": outcome.watchers,
        "frames": outcome.deliveries,
        "p50_ms": outcome.histogram.percentile(0.5) / 1e3,
        "p99_ms": outcome.histogram.percentile(0.99) / 1e3,
        "text_faults": outcome.text_faults,
        "seq_faults": outcome.seq_faults,
        "incomplete": outcome.incomplete,
        "closes": outcome.closes,
    }


def run_round(
    server: ServerProcess, watchers: StreamWatchers, number: int, args: argparse.Namespace
) -> list[Segment]:
    """Every phase once, in an order turned by ``number``: its steady segment, its burst."""
    turn = number % len(args.phases)
    segments = []
    for phase in args.phases[turn:] + args.phases[:turn]:
        groups = PHASES[phase](args.watchers)
        for segment, events, rate in (
            ("steady", round(args.rate * args.duration), args.rate),
            ("burst", args.burst, math.inf),
        ):
            channel = f"r{number}-{phase}-{segment}"
            segments.append(
                run_segment(server, watchers, phase, segment, groups, channel, events, rate, number)
            )
            print(_row(segments[-1:]), flush=True)
    return segments


HEADER = (
    f"{'phase':<12} {'segment':<7} {'events':>6} {'watchers':>8} {'ns/delivery':>11} "
    f"{'us/event':>9} {'B/delivery':>10} {'writes/ev':>9} {'recv CPU':>8} {'faults':>6}"
    "  per group: p50 / p99 ms"
)
FIGURES: dict[str, Callable[[Segment], float]] = {
    "ns/delivery": lambda s: s.ns_per_delivery,
    "us/event": lambda s: s.us_per_event,
    "B/delivery": lambda s: s.bytes_per_delivery,
    "writes/ev": lambda s: s.writes / s.events,
    "recv CPU": lambda s: s.receiver_cpu,
}


def _row(found: list[Segment]) -> str:
    """One line: a segment, or the medians of the same segment over rounds."""
    first = found[0]
    value = {name: statistics.median(f(s) for s in found) for name, f in FIGURES.items()}
    groups = "  ".join(
        f"{name} {_median(found, name, 'p50_ms')} / {_median(found, name, 'p99_ms')}"
        for name in sorted(first.groups)
    )
    return (
        f"{first.phase:<12} {first.segment:<7} {first.events:>6,} {first.watchers:>8} "
        f"{value['ns/delivery']:>11,.0f} {value['us/event']:>9,.1f} {value['B/delivery']:>10.1f} "
        f"{value['writes/ev']:>9.1f} {value['recv CPU']:>8.0%} "
        f"{sum(s.faults for s in found):>6}  {groups}"
    )


def _median(found: list[Segment], group: str, key: str) -> str:
    values = [s.groups[group][key] for s in found]
    return "-" if any(math.isnan(v) for v in values) else f"{statistics.median(values):.2f}"


def _find(segments: list[Segment], phase: str, segment: str) -> Segment | None:
    return next((s for s in segments if s.phase == phase and s.segment == segment), None)


def _ratio_line(label: str, ratios: list[float]) -> str:
    each = ", ".join(f"{r:.2f}" for r in ratios)
    return f"{label}: {statistics.median(ratios):.2f}x [{each}]"


def summary(rounds: list[list[Segment]], phases: list[str]) -> list[str]:
    """Medians over the rounds, and the medians of each round's ratios."""
    lines = ["", "median of the rounds:", HEADER]
    for phase in phases:
        for segment in ("steady", "burst"):
            lines.append(_row([s for r in rounds if (s := _find(r, phase, segment))]))
    lines += ["", "ratios (median of the rounds' ratios; per round in brackets):"]
    for top in ("sse", "ws+agui", "ws+agui-sse"):
        if top not in phases or "ws" not in phases:
            continue
        for segment in ("steady", "burst"):
            pairs = [(_find(r, top, segment), _find(r, "ws", segment)) for r in rounds]
            ratios = [a.ns_per_delivery / b.ns_per_delivery for a, b in pairs if a and b]
            lines.append(
                _ratio_line(f"{top}/ws {segment} CPU per delivery (and per event)", ratios)
            )
    if "sse" in phases and "ws" in phases:
        for key in ("p50_ms", "p99_ms"):
            pairs = [(_find(r, "sse", "steady"), _find(r, "ws", "steady")) for r in rounds]
            ratios = [_latency(a, key) / _latency(b, key) for a, b in pairs if a and b]
            lines.append(_ratio_line(f"sse/ws steady {key[:3]}", ratios))
    if "ws+sse" in phases:  # the same ticks: the core writes one encoding's clients, then the next
        found = [s for r in rounds if (s := _find(r, "ws+sse", "steady"))]
        for key in ("p50_ms", "p99_ms"):
            ratios = [s.groups["sse:agentcast"][key] / s.groups["ws:agentcast"][key] for s in found]
            lines.append(_ratio_line(f"ws+sse steady, sse/ws {key[:3]} (write order)", ratios))
    return lines


def _latency(segment: Segment, key: str) -> float:
    (group,) = segment.groups.values()
    return group[key]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="events/s in steady")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of steady")
    parser.add_argument("--burst", type=int, default=2000, help="events in burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--phases", type=lambda text: text.split(","), default=list(DEFAULT_PHASES),
        help=f"comma-separated, of {','.join(PHASES)}",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write every round's segments here")
    args = parser.parse_args()
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {','.join(sorted(unknown))}; of {','.join(PHASES)}")
    cpus = plan_cpus(1)
    print(f"server on CPU {cpus.server}, watchers on CPU {cpus.receivers[0]}; "
          f"load average {_load()} at the start")  # fmt: skip
    server = ServerProcess("agentcast", cpus.server).start()
    rounds: list[list[Segment]] = []
    loads = []
    try:
        watchers = StreamWatchers(server.port, cpus.receivers[0])
        try:
            for number in range(1, args.rounds + 1):
                loads.append(_load())
                print(f"\nround {number}/{args.rounds}, load average {loads[-1]}\n{HEADER}")
                rounds.append(run_round(server, watchers, number, args))
        finally:
            watchers.stop()
    finally:
        server.stop()
    for line in summary(rounds, args.phases):
        print(line)
    print(f"\nload average {_load()} at the end")
    if args.json is not None:
        document = {"argv": sys.argv[1:], "loads": loads, "rounds": [
            [{**asdict(s), "ns_per_delivery": s.ns_per_delivery} for s in r] for r in rounds
        ]}  # fmt: skip
        # no latency in a burst: null, not JSON's missing NaN
        text = json.dumps(document, indent=1).replace("NaN", "null")
        args.json.write_text(text)
    faults = sum(s.faults for r in rounds for s in r)
    if faults:
        print(f"FAILED: {faults} faults (text, seq, incomplete or closed)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    start = time.monotonic()
    status = main()
    print(f"{time.monotonic() - start:.0f} s")
    sys.exit(status)
