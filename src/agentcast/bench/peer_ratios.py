"""agentcast against each peer where each agent has its own watchers (``agents``,
``tokens-v1``, ``tokens``): the ratios of their medians for the same workload and client
count, this run; and each agentcast setting against the run's first agentcast server.

A delivery there is a ``send`` of its own with one frame, and an event's serialization,
``seq`` and history are shared by 1-2 deliveries (``agents``) or ``--watchers``
(``tokens``), not by a burst's thousand: its cost is compared with the peers' in the
same workload, never with a burst's.
"""

from __future__ import annotations

from agentcast.bench.peers import parse_spec
from agentcast.bench.ratios import ratio
from agentcast.bench.ratios import table as ratios_table
from agentcast.bench.sweep import Cell, Sweep

# workloads compared on the same figures -> (summary key, column header) in table order
RATIOS: dict[tuple[str, ...], list[tuple[str, str]]] = {
    ("agents", "tokens-v1"): [("server_ns", "server ns/deliv"), ("p99_ms", "p99")],
    ("tokens",): [
        ("process_ns", "process ns/frame"),
        ("p99_ms", "keeper p99"),
        ("alone_p99_ms", "p99 alone"),
    ],
}
WORKLOADS = tuple(name for names in RATIOS for name in names)
TITLE = (
    "agentcast / peer: medians of the same workload and clients, this run (< 1: agentcast's lower)"
)
SETTINGS_TITLE = (
    "agentcast with settings / agentcast with fewer: medians of the same workload and clients,"
    " this run (< 1: the added settings' lower)"
)
OURS = "agentcast"


def _name(cell: Cell) -> str:
    return cell.server.partition(":")[0]


def _rows(
    pairs: list[tuple[Cell, Cell]], keys: list[tuple[str, str]]
) -> list[tuple[list[str], list[str]]]:
    return [
        (
            [over.workload, f"{over.server} / {under.server}", f"{over.clients:,}"],
            [ratio(over, under, key) for key, _ in keys],
        )
        for over, under in pairs
    ]


def _settings(cell: Cell) -> set[tuple[str, object]]:
    return set(parse_spec(cell.server)[1].items())


def _nearest_fewer(cell: Cell, cells: list[Cell]) -> Cell | None:
    """The agentcast cell of ``cell``'s workload and client count whose settings are the
    most of ``cell``'s but not all of them (``agentcast:a:release_gil`` against
    ``agentcast:a``, ``agentcast:a`` against ``agentcast``); None when there is none."""
    mine = _settings(cell)
    fewer = [
        other
        for other in cells
        if _name(other) == OURS
        and (other.workload, other.clients) == (cell.workload, cell.clients)
        and _settings(other) < mine
    ]
    return max(fewer, key=lambda other: len(_settings(other)), default=None)


def table(sweep: Sweep) -> list[str]:
    """Per group of ``RATIOS``, a row per agentcast cell and peer cell of the same workload
    and client count; then a row per agentcast cell with settings against the one with the
    most of them but not all (``_nearest_fewer``). Nothing where there is no such pair."""
    lines: list[str] = []
    labels = ["workload", "servers", "clients"]
    for workloads, keys in RATIOS.items():
        cells = [c for c in sweep.cells if c.workload in workloads]
        against_peers = [
            (ours, theirs)
            for ours in cells
            if _name(ours) == OURS
            for theirs in cells
            if (theirs.workload, theirs.clients) == (ours.workload, ours.clients)
            and _name(theirs) != OURS
        ]
        headers = [header for _, header in keys]
        lines += ratios_table(TITLE, labels, headers, _rows(against_peers, keys))
        settings = [
            (cell, base)
            for cell in cells
            if _name(cell) == OURS and (base := _nearest_fewer(cell, cells)) is not None
        ]
        lines += ratios_table(SETTINGS_TITLE, labels, headers, _rows(settings, keys))
    return lines
