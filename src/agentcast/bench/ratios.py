"""Ratios of two cells' medians, and the table both ratio reports print them in."""

from __future__ import annotations

import math

from agentcast.bench.sweep import Cell


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


def table(
    title: str, labels: list[str], headers: list[str], rows: list[tuple[list[str], list[str]]]
) -> list[str]:
    """``title`` and a line per row: its label columns (``labels``; the last holds a client
    count, right-aligned), then its ratios under ``headers``; nothing without rows."""
    if not rows:
        return []
    widths = [max(len(label), *(len(row[0][i]) for row in rows)) for i, label in enumerate(labels)]

    def line(cells: list[str], ratios: list[str]) -> str:
        left = [cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=False)]
        values = [value.rjust(len(header)) for value, header in zip(ratios, headers, strict=True)]
        return "  ".join([*left, cells[-1].rjust(widths[-1]), *values])

    return ["", title, line(labels, headers)] + [line(cells, ratios) for cells, ratios in rows]
