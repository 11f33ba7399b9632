"""agentcast against each peer where each agent has its own watchers (``agents``,
``tokens``): the ratios of their medians for the same workload and client count, this run.

A delivery there is a ``send`` of its own with one frame, and an event's serialization,
``seq`` and history are shared by 1-2 deliveries (``agents``) or ``--watchers``
(``tokens``), not by a burst's thousand: its cost is compared with the peers' in the
same workload, never with a burst's.
"""

from __future__ import annotations

from agentcast.bench.ratios import ratio
from agentcast.bench.ratios import table as ratios_table
from agentcast.bench.sweep import Cell, Sweep

WORKLOADS = ("agents", "tokens")
# (summary key, column header) in table order
RATIOS = [("server_ns", "server ns/deliv"), ("p99_ms", "p99")]
TITLE = (
    "agentcast / peer: medians of the same workload and clients, this run (< 1: agentcast's lower)"
)
OURS = "agentcast"


def _name(cell: Cell) -> str:
    return cell.server.partition(":")[0]


def table(sweep: Sweep) -> list[str]:
    """A row per agentcast cell of ``WORKLOADS`` and peer cell of the same workload and
    client count; nothing when there is no such pair."""
    rows = [
        (
            [ours.workload, f"{ours.server} / {theirs.server}", f"{ours.clients:,}"],
            [ratio(ours, theirs, key) for key, _ in RATIOS],
        )
        for ours in sweep.cells
        if ours.workload in WORKLOADS and _name(ours) == OURS
        for theirs in sweep.cells
        if (theirs.workload, theirs.clients) == (ours.workload, ours.clients)
        and _name(theirs) != OURS
    ]
    return ratios_table(
        TITLE, ["workload", "servers", "clients"], [header for _, header in RATIOS], rows
    )
