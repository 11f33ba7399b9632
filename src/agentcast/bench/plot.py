"""The sweep as a PNG: one panel per workload that ran, read from the run's JSON document.

Drawing from the document (``report.document``, what ``--json`` writes) rather than the
live sweep lets ``agentcast bench --replot RUN.json --plot RUN.png`` redraw a saved run.

matplotlib is optional (``pip install ".[bench]"``) and imported by name, so the package
type-checks and runs without it.
"""

from __future__ import annotations

import importlib
import math
import statistics
from pathlib import Path
from typing import Any

from agentcast.bench.report import TITLES

__all__ = ["CURVES", "PANELS", "plot"]

# workload -> (summary key, y-axis label, log y axis); in this order, those that ran
PANELS: dict[str, tuple[str, str, bool]] = {
    "burst": ("deliveries_per_s", "deliveries per second", True),
    "observe": ("deliveries_per_s", "deliveries per second", True),
    "latency": ("p99_ms", "p99 publish-to-receive latency (ms)", True),
    "headroom": ("headroom", "agent work rate / idle rate", False),
    "publish": ("median_us", "publish() call, median (µs)", True),
    "memory": ("kib_per_client", "server RSS per client (KiB)", False),
    "agents": ("server_ns", "server CPU per delivery (ns)", True),
    "tokens": ("p99_ms", "keepers' p99 delta latency with laggards (ms)", True),
    "tokens-v1": ("p99_ms", "p99 token-delta latency (ms)", True),
}
# workload -> (x key, x-axis label, y key, y-axis label, log y axis): one measured value
# against another, a curve per server (and client count) through its points, one per
# publish rate; in this order after PANELS
CURVES: dict[str, tuple[str, str, str, str, bool]] = {
    "frontier": (
        "headroom",
        "agent headroom: work rate / idle rate (more is better)",
        "p99_ms",
        "p99 publish-to-receive latency (ms)",
        True,
    ),
}
PANEL_WIDTH, PANEL_HEIGHT = 5.2, 4.2  # inches
CURVE_SPAN = 2  # a CURVES panel is this many panels wide: its points carry labels
LABEL_INCHES_PER_CHAR = 0.085  # a legend label at its size; 0.5 in more for the marker
HEADLINE_CHARS_PER_INCH = 11  # at its 11 pt: a narrow figure's headline goes on two lines
MARKERS = "osD^v<>"  # one per client count on a CURVES panel


def plot(document: dict[str, Any], path: Path) -> None:
    """Write ``document``'s results to ``path`` (PNG, or any format its suffix names).

    A point is the median of the rounds, its bar the rounds' range. A server that lost
    deliveries (it fell behind and the drain gave up) is drawn hollow and labelled with
    its loss: its latency is that of the frames that did arrive, not a p99 of the run.
    """
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # a .svg path keeps its text as text
    pyplot = importlib.import_module("matplotlib.pyplot")
    ticker = importlib.import_module("matplotlib.ticker")

    results = [r for r in document["results"] if r["error"] is None and r["rounds"]]
    workloads = [w for w in (*PANELS, *CURVES) if any(r["workload"] == w for r in results)]
    if not workloads:
        raise ValueError("nothing to plot: no workload has a finished cell")
    servers = list(dict.fromkeys(r["server"] for r in results))
    palette = pyplot.get_cmap("tab10")
    colors = {server: palette(i % 10) for i, server in enumerate(servers)}

    spans = [CURVE_SPAN if w in CURVES else 1 for w in workloads]
    width = PANEL_WIDTH * sum(spans)
    figure, axes = pyplot.subplots(
        1,
        len(workloads),
        figsize=(width, PANEL_HEIGHT + 1.4),
        squeeze=False,
        gridspec_kw={"width_ratios": spans},
    )
    for workload, ax in zip(workloads, axes[0], strict=True):
        cells = [r for r in results if r["workload"] == workload]
        if workload in CURVES:
            _draw_curves(ax, ticker, cells, colors, CURVES[workload])
        else:
            key, label, log_y = PANELS[workload]
            for server in servers:
                _draw_server(ax, [c for c in cells if c["server"] == server], key, colors[server])
            _style_axes(ax, ticker, cells, label, log_y)
        ax.set_title(_wrap(TITLES[workload].format(**document["settings"])), fontsize=10)
        if footnote := _fell_behind(cells):
            ax.text(0, -0.22, _wrap(footnote, 70), transform=ax.transAxes, fontsize=8, va="top")

    handles = [pyplot.Line2D([], [], color=colors[s], marker="o", label=s) for s in servers]
    if any(_lost_share(r) > 0 for r in results):
        handles.append(
            pyplot.Line2D(
                [], [], color="grey", marker="o", markerfacecolor="white", linestyle="none",
                label="hollow: fell behind",
            )
        )  # fmt: skip
    longest = max(len(h.get_label()) for h in handles)
    columns = max(1, min(len(handles), int(width / (0.5 + LABEL_INCHES_PER_CHAR * longest))))
    figure.legend(handles=handles, loc="lower center", ncol=columns, frameon=False)
    headline = _wrap(_headline(document), int(width * HEADLINE_CHARS_PER_INCH))
    figure.suptitle(headline, fontsize=11)
    rows = math.ceil(len(handles) / columns)
    legend_share = (0.35 * rows + 0.1) / figure.get_figheight()
    top = 0.96 - 0.04 * headline.count("\n")
    figure.tight_layout(rect=(0, legend_share, 1, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _fell_behind(cells: list[dict[str, Any]]) -> str:
    """The panel's footnote naming the hollow points: who fell behind where, and how far."""
    behind = [
        f"{c['server']} at {c['clients']:,} lost {_lost_share(c):.0%}"
        for c in cells
        if _lost_share(c) > 0
    ]
    return "fell behind (hollow): " + "; ".join(behind) if behind else ""


def _draw_server(ax: Any, cells: list[dict[str, Any]], key: str, color: Any) -> None:
    """One server's line: medians with the rounds' range, hollow where it lost frames."""
    points = []
    for cell in sorted(cells, key=lambda c: c["clients"]):
        values = [r[key] for r in cell["rounds"] if r.get(key) is not None]
        values = [v for v in values if not math.isnan(v)]
        if values:
            median = statistics.median(values)
            points.append((cell["clients"], median, min(values), max(values), _lost_share(cell)))
    if not points:
        return
    clients = [p[0] for p in points]
    medians = [p[1] for p in points]
    errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
    ax.errorbar(clients, medians, yerr=errors, color=color, marker="o", capsize=3, linewidth=1.5)
    for x, y, _, _, lost in points:
        if lost > 0:
            ax.plot(x, y, marker="o", markersize=10, color=color, markerfacecolor="white")


def _style_axes(ax: Any, ticker: Any, cells: list[dict[str, Any]], label: str, log_y: bool) -> None:
    """Plain-number ticks: the client counts measured on x, 1-2-5 steps on a log y."""
    clients = sorted({c["clients"] for c in cells})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.FixedLocator(clients))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    if len(clients) == 1:
        ax.set_xlim(clients[0] / 2, clients[0] * 2)
    ax.set_xlabel("connected clients")
    ax.set_ylabel(label)
    _style_y(ax, ticker, log_y)


def _style_y(ax: Any, ticker: Any, log_y: bool) -> None:
    """Plain-number y ticks, in 1-2-5 steps on a log axis; a light grid."""
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: _plain(y)))
    ax.grid(True, alpha=0.3)


def _draw_curves(
    ax: Any,
    ticker: Any,
    cells: list[dict[str, Any]],
    colors: dict[str, Any],
    curve: tuple[str, str, str, str, bool],
) -> None:
    """A CURVES panel: per server and client count, its points in publish-rate order, each
    the rounds' median on both axes with their ranges as bars, labelled with its rate."""
    x_key, x_label, y_key, y_label, log_y = curve
    client_counts = sorted({c["clients"] for c in cells})
    markers = {clients: MARKERS[i % len(MARKERS)] for i, clients in enumerate(client_counts)}
    for server, color in colors.items():
        for clients in client_counts:
            points = [
                p
                for c in cells
                if c["server"] == server and c["clients"] == clients
                if (p := _point(c, x_key, y_key)) is not None
            ]
            points.sort(key=lambda p: p[0])
            if not points:
                continue
            x_spreads, y_spreads = [p[1] for p in points], [p[2] for p in points]
            ax.errorbar(
                [x[0] for x in x_spreads],
                [y[0] for y in y_spreads],
                xerr=_bars(x_spreads),
                yerr=_bars(y_spreads),
                color=color,
                marker=markers[clients],
                capsize=2,
                linewidth=1.5,
            )
            for rate, (x, _, _), (y, _, _), lost in points:
                ax.annotate(
                    f"{rate:,g}/s",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                    color=color,
                )
                if lost > 0:
                    ax.plot(
                        x,
                        y,
                        marker=markers[clients],
                        markersize=10,
                        color=color,
                        markerfacecolor="white",
                    )
    if len(client_counts) > 1:
        pyplot = importlib.import_module("matplotlib.pyplot")
        handles = [
            pyplot.Line2D(
                [], [], color="grey", marker=markers[n], linestyle="none", label=f"{n:,} clients"
            )
            for n in client_counts
        ]
        ax.legend(handles=handles, fontsize=8, frameon=False)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    _style_y(ax, ticker, log_y)


Spread = tuple[float, float, float]  # median, lowest, highest of the rounds


def _point(
    cell: dict[str, Any], x_key: str, y_key: str
) -> tuple[float, Spread, Spread, float] | None:
    """(rate, x spread, y spread, lost share) of a CURVES cell; None without both values."""
    x, y = _spread(cell, x_key), _spread(cell, y_key)
    if x is None or y is None:
        return None
    return cell["summary"].get("rate") or 0.0, x, y, _lost_share(cell)


def _bars(spreads: list[Spread]) -> list[list[float]]:
    """Error bars from each median down to the lowest round and up to the highest."""
    return [[m - low for m, low, _ in spreads], [high - m for m, _, high in spreads]]


def _spread(cell: dict[str, Any], key: str) -> Spread | None:
    values = [r[key] for r in cell["rounds"] if r.get(key) is not None and not math.isnan(r[key])]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def _plain(value: float) -> str:
    """150000 -> 150k, 2.5e7 -> 25M, 0.5 -> 0.5: readable tick labels without powers of ten."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def _lost_share(cell: dict[str, Any]) -> float:
    return max((r.get("lost_share") or 0.0 for r in cell["rounds"]), default=0.0)


def _headline(document: dict[str, Any]) -> str:
    settings, machine = document["settings"], document["machine"]
    cpu = machine.get("cpu_model", "unknown CPU")
    rounds = settings["rounds"]
    measured = "1 round" if rounds == 1 else f"median of {rounds} rounds (bars: their range)"
    return (
        f"agentcast bench: {measured}, "
        f"{settings.get('receiver', 'python')} receivers; "
        f"{machine.get('cpus', '?')} cores, {cpu}, Python {machine['python']}"
    )


def _wrap(title: str, width: int = 48) -> str:
    """A panel title over two lines at most, split at a space."""
    if len(title) <= width:
        return title
    cut = title.rfind(" ", 0, width)
    return title[:cut] + "\n" + title[cut + 1 :]
