"""``wss://`` against ``ws://``: for each server that ran both ways in one sweep (``picows``
and ``picows:tls``), the ratios of their medians for the same workload and client count."""

from __future__ import annotations

from typing import Any

from agentcast.bench.peers import parse_spec
from agentcast.bench.ratios import ratio
from agentcast.bench.ratios import table as ratios_table
from agentcast.bench.sweep import Sweep

# (workload, summary key, column header) in table order
RATIOS = [
    ("burst", "deliveries_per_s", "burst deliveries/s"),
    ("burst", "server_ns", "burst server ns/deliv"),
    ("latency", "p50_ms", "latency p50"),
    ("latency", "p99_ms", "latency p99"),
]
TITLE = "TLS / plain: the same server's medians over wss:// and over ws://, this run"


Parsed = tuple[str, dict[str, Any]]


def _parsed(server: str) -> Parsed | None:
    """The server's spec parsed (None for ``--url``'s address)."""
    try:
        return parse_spec(server)
    except ValueError:
        return None


def _plain(parsed: Parsed | None) -> Parsed | None:
    """The same spec without TLS, or None when it is not a TLS one."""
    if parsed is None or not parsed[1].get("tls"):
        return None
    name, settings = parsed
    return name, {key: value for key, value in settings.items() if key != "tls"}


def table(sweep: Sweep) -> list[str]:
    """A row per TLS server and client count whose plain twin ran too; nothing otherwise."""
    cells = {(c.workload, c.server, c.clients): c for c in sweep.cells}
    specs = {server: _parsed(server) for _, server, _ in cells}
    rows: list[tuple[list[str], list[str]]] = []
    for server, clients in dict.fromkeys((server, n) for _, server, n in cells):
        plain = _plain(specs[server])
        twin = next((other for other, parsed in specs.items() if plain and parsed == plain), None)
        if twin is None:
            continue
        ratios = [
            ratio(cells.get((workload, server, clients)), cells.get((workload, twin, clients)), key)
            for workload, key, _ in RATIOS
        ]
        if any(value != "-" for value in ratios):
            rows.append(([server, f"{clients:,}"], ratios))
    return ratios_table(TITLE, ["server", "clients"], [header for _, _, header in RATIOS], rows)
