"""Fan-out rounds collected over the session, and the comparison table printed at its end."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

SERVERS = ("agentcast", "websockets")


@dataclass(frozen=True)
class FanoutRound:
    deliveries_per_s: float
    receiver_cpu_share: float  # receiver CPU time / round time: near 1.0 it would be the limit


def fanout_table(rounds: dict[tuple[str, int], list[FanoutRound]]) -> list[str]:
    """Median deliveries/s per server and client count, and agentcast's speed-up."""
    lines = [f"{'clients':>7}  {'agentcast':>12}  {'websockets':>12}  {'ratio':>7}  receiver CPU"]
    for clients in sorted({clients for _, clients in rounds}):
        medians = {}
        shares = []
        for server in SERVERS:
            runs = rounds.get((server, clients), [])
            medians[server] = statistics.median(r.deliveries_per_s for r in runs) if runs else 0.0
            shares.append(f"{max((r.receiver_cpu_share for r in runs), default=0.0):.0%}")
        speedup = medians["agentcast"] / medians["websockets"] if medians["websockets"] else 0.0
        lines.append(
            f"{clients:>7}  {medians['agentcast']:>12,.0f}  {medians['websockets']:>12,.0f}"
            f"  {speedup:>6.1f}x  {' / '.join(shares)} (max of rounds)"
        )
    return lines
