"""``wss://`` against ``ws://``: for each server that ran both ways in one sweep (``picows``
and ``picows:tls``), the ratios of their medians for the same workload and client count."""

from __future__ import annotations

import math
from typing import Any

from agentcast.loadgen.peers import parse_spec
from agentcast.loadgen.sweep import Cell, Sweep

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


def ratio(over: Cell | None, under: Cell | None, key: str) -> str:
    """``over``'s median of ``key`` over ``under``'s, as "0.93x" (two significant digits
    below 0.1, "0.00057x", so a ratio of thousands is not printed as zero); "-" when either
    is missing."""
    if over is None or under is None or over.error is not None or under.error is not None:
        return "-"
    top, bottom = over.summary().get(key, math.nan), under.summary().get(key, math.nan)
    if math.isnan(top) or math.isnan(bottom) or bottom == 0:
        return "-"
    value = top / bottom
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def table(sweep: Sweep) -> list[str]:
    """A row per TLS server and client count whose plain twin ran too; nothing otherwise."""
    cells = {(c.workload, c.server, c.clients): c for c in sweep.cells}
    specs = {server: _parsed(server) for _, server, _ in cells}
    rows: list[tuple[str, int, list[str]]] = []
    for server, clients in dict.fromkeys((server, n) for _, server, n in cells):
        plain = _plain(specs[server])
        twin = next((other for other, parsed in specs.items() if plain and parsed == plain), None)
        if twin is None:
            continue
        ratios = [
            ratio(cells.get((workload, server, clients)), cells.get((workload, twin, clients)), key)
            for workload, key, _ in RATIOS
        ]
        if any(ratio != "-" for ratio in ratios):
            rows.append((server, clients, ratios))
    if not rows:
        return []
    width = max(len("server"), *(len(server) for server, _, _ in rows))
    headers = [header for _, _, header in RATIOS]
    lines = ["", TITLE, f"{'server'.ljust(width)}  {'clients':>7}  " + "  ".join(headers)]
    for server, clients, ratios in rows:
        values = "  ".join(r.rjust(len(h)) for r, h in zip(ratios, headers, strict=True))
        lines.append(f"{server.ljust(width)}  {clients:>7,}  {values}")
    return lines
