"""Whether one server's latency/headroom curve lies below another's, from the frontier's points.

A curve is a server's points (one per publish rate: median headroom, median p99) joined by
straight lines in headroom order. Two curves are compared where both are defined, the
headroom range they share, at every headroom either has a point at (and the range's ends):
between those, both are straight, so "lower at each of them" is "lower everywhere in the
range". Outside it there is no point of the other curve at equal headroom to compare with.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from agentcast.bench.peers import parse_spec
from agentcast.bench.sweep import Cell

Curve = list[tuple[float, float]]  # (headroom, p99 ms), headroom ascending


def curve(points: list[Cell]) -> Curve:
    """The medians of ``points`` (one server, one client count), in headroom order."""
    pairs = [
        (c.summary().get("headroom", math.nan), c.summary().get("p99_ms", math.nan)) for c in points
    ]
    return sorted((h, p) for h, p in pairs if not (math.isnan(h) or math.isnan(p)))


def at(line: Curve, headroom: float) -> float:
    """``line``'s p99 at ``headroom`` (straight between points); NaN outside its range."""
    for (h0, p0), (h1, p1) in itertools.pairwise(line):
        if h0 <= headroom <= h1:
            return p0 if h1 == h0 else p0 + (p1 - p0) * (headroom - h0) / (h1 - h0)
    if line and line[0][0] == headroom:
        return line[0][1]
    return math.nan


@dataclass(frozen=True)
class Comparison:
    """``lower`` against ``upper`` over their shared headroom range ``low``..``high``."""

    lower: str
    upper: str
    low: float
    high: float
    checks: list[tuple[float, float, float]]  # headroom, lower's p99, upper's p99

    @property
    def below_everywhere(self) -> bool:
        return bool(self.checks) and all(a < b for _, a, b in self.checks)

    def describe(self) -> str:
        if not self.checks:
            return f"{self.lower} vs {self.upper}: no headroom in common, nothing to compare"
        worst = max(self.checks, key=lambda c: c[1] / c[2])
        lower_at = sum(a < b for _, a, b in self.checks)
        verdict = "below everywhere" if self.below_everywhere else "NOT below everywhere"
        return (
            f"{self.lower} vs {self.upper}: {verdict} on headroom {self.low:.0%}-{self.high:.0%}"
            f" (p99 lower at {lower_at} of {len(self.checks)} checks; closest: "
            f"{worst[1]:.2f} vs {worst[2]:.2f} ms at {worst[0]:.0%})"
        )


def compare(lower: str, lower_line: Curve, upper: str, upper_line: Curve) -> Comparison:
    if not lower_line or not upper_line:
        return Comparison(lower, upper, math.nan, math.nan, [])
    low = max(lower_line[0][0], upper_line[0][0])
    high = min(lower_line[-1][0], upper_line[-1][0])
    if low > high:
        return Comparison(lower, upper, low, high, [])
    headrooms = sorted({low, high, *(h for h, _ in lower_line + upper_line if low <= h <= high)})
    checks = [(h, at(lower_line, h), at(upper_line, h)) for h in headrooms]
    return Comparison(lower, upper, low, high, checks)


def verdicts(points: list[Cell]) -> list[str]:
    """For each client count: each agentcast curve against each other server's."""
    lines = []
    frontier = [c for c in points if c.workload == "frontier" and c.error is None and c.rounds]
    for clients in sorted({c.clients for c in frontier}):
        servers = list(dict.fromkeys(c.server for c in frontier if c.clients == clients))
        lines_of = {
            s: curve([c for c in frontier if c.server == s and c.clients == clients])
            for s in servers
        }
        ours = [s for s in servers if _is_agentcast(s)]
        for peer in (s for s in servers if not _is_agentcast(s)):
            for server in ours:
                comparison = compare(server, lines_of[server], peer, lines_of[peer])
                lines.append(f"frontier x {clients:,}: {comparison.describe()}")
    return lines


def _is_agentcast(server: str) -> bool:
    try:
        return parse_spec(server)[0] == "agentcast"
    except ValueError:  # a URL
        return False
