"""The sweep's results as a terminal table and a JSON document (``plot`` draws the PNG)."""

from __future__ import annotations

import math
import os
import platform
from typing import Any

from agentcast.bench.frontier import verdicts
from agentcast.bench.harness import CpuPlan
from agentcast.bench.sweep import Cell, Sweep
from agentcast.bench.workloads import FRONTIER_LOADS, TOKEN_RATE, Round, Settings

SATURATED = 0.9  # receiver CPU time / wall time at which the receivers may be the limit

# workload -> (summary key, column header, format) in table order
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "burst": [
        ("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        ("mb_per_s", "MB/s", "{:,.1f}"),
        ("server_ns", "server ns/deliv", "{:,.1f}"),
        ("lost", "lost", "{:,.0f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
        ("receiver_frames_per_cpu_s", "recv frames/CPU s", "{:,.0f}"),
    ],
    "latency": [
        ("p50_ms", "p50 ms", "{:,.2f}"),
        ("p99_ms", "p99 ms", "{:,.2f}"),
        ("p999_ms", "p99.9 ms", "{:,.2f}"),
        ("max_ms", "max ms", "{:,.2f}"),
        ("worst_client_p99_ms", "worst client p99 ms", "{:,.2f}"),
        ("latency_samples", "samples", "{:,.0f}"),
        ("lost", "lost", "{:,.0f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
    ],
    "publish": [
        ("idle_median_us", "median us (0)", "{:,.2f}"),
        ("idle_p99_us", "p99 us (0)", "{:,.2f}"),
        ("median_us", "median us", "{:,.2f}"),
        ("p99_us", "p99 us", "{:,.2f}"),
        ("lost", "lost", "{:,.0f}"),
    ],
    "headroom": [
        ("headroom", "agent headroom", "{:.0%}"),
        ("p50_ms", "p50 ms", "{:,.2f}"),
        ("p99_ms", "p99 ms", "{:,.2f}"),
        ("max_ms", "max ms", "{:,.2f}"),
        ("worst_client_p99_ms", "worst client p99 ms", "{:,.2f}"),
        ("lost", "lost", "{:,.0f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
    ],
    "chat": [
        ("requests_per_s", "requests/s", "{:,.0f}"),
        ("start_p50_ms", "start p50 ms", "{:,.2f}"),
        ("start_p99_ms", "start p99 ms", "{:,.2f}"),
        ("first_p50_ms", "1st msg p50 ms", "{:,.2f}"),
        ("first_p99_ms", "1st msg p99 ms", "{:,.2f}"),
        ("end_p50_ms", "end p50 ms", "{:,.2f}"),
        ("end_p99_ms", "end p99 ms", "{:,.2f}"),
        ("errors", "errors", "{:,.0f}"),
        ("no_agent_message", "end before msg", "{:,.0f}"),
        ("lost", "unanswered", "{:,.0f}"),
        ("receiver_cpu", "client CPU", "{:.0%}"),
    ],
    "memory": [
        ("kib_per_client", "KiB/client", "{:,.1f}"),
        ("idle_rss_mb", "RSS, no clients MB", "{:,.1f}"),
    ],
    "agents": [
        ("agents", "agents", "{:,.0f}"),
        ("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        ("server_ns", "server ns/deliv", "{:,.1f}"),
        ("server_event_ns", "server ns/event", "{:,.0f}"),
        ("publisher_ns", "bench ns/event", "{:,.0f}"),
        ("server_cpu", "process CPU", "{:.0%}"),
        ("p50_ms", "p50 ms", "{:,.2f}"),
        ("p99_ms", "p99 ms", "{:,.2f}"),
        ("worst_client_p99_ms", "worst client p99 ms", "{:,.2f}"),
        ("latency_samples", "samples", "{:,.0f}"),
        ("lost", "lost", "{:,.0f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
    ],
    "tokens": [
        ("agents", "agents", "{:,.0f}"),
        ("laggards", "laggards", "{:,.0f}"),
        ("p50_ms", "keeper p50 ms", "{:,.2f}"),
        ("p99_ms", "keeper p99 ms", "{:,.2f}"),
        ("alone_p99_ms", "p99 alone ms", "{:,.2f}"),
        ("p99_ratio", "p99/alone", "{:.2f}x"),
        ("text_faults", "text faults", "{:,.0f}"),
        ("stream_faults", "seq faults", "{:,.0f}"),
        ("closes", "closes", "{:,.0f}"),
        ("lost", "incomplete", "{:,.0f}"),
        ("frames_share", "lag frames/unmerged", "{:.0%}"),
        ("bytes_share", "lag bytes/unmerged", "{:.0%}"),
        ("laggard_merged", "merged frames", "{:,.0f}"),
        ("laggard_done_s", "laggards done s", "{:,.2f}"),
        ("process_ns", "process ns/frame", "{:,.0f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
    ],
    "tokens-v1": [
        ("agents", "agents", "{:,.0f}"),
        ("deliveries_per_s", "deltas/s", "{:,.0f}"),
        ("p50_ms", "p50 ms", "{:,.2f}"),
        ("p99_ms", "p99 ms", "{:,.2f}"),
        ("max_ms", "max ms", "{:,.2f}"),
        ("server_cpu", "process CPU", "{:.0%}"),
        ("server_ns", "server ns/deliv", "{:,.1f}"),
        ("publisher_ns", "bench ns/event", "{:,.0f}"),
        ("latency_samples", "samples", "{:,.0f}"),
        ("lost", "lost", "{:,.0f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
    ],
    "observe": [
        ("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        ("mb_per_s", "MB/s", "{:,.1f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
    ],
}
# a frontier point is a headroom measurement at one of the rates
COLUMNS["frontier"] = [("rate", "msg/s", "{:,.0f}"), *COLUMNS["headroom"]]
TITLES = {
    "burst": "burst: {messages:,} x {size} B published back to back",
    "latency": "latency: {rate:,g} msg/s of {size} B for {duration:g} s",
    "publish": "publish: one publish() call, {messages:,} back to back; (0): no clients",
    "headroom": "headroom: agent work rate at {rate:,g} msg/s over its idle rate",
    "frontier": "frontier: p99 against agent headroom at "
    + ", ".join(f"{load:g}" for load in FRONTIER_LOADS)
    + " x {rate:,g} msg/s",
    "chat": "chat: each client sends user_message in turn for {duration:g} s; ms from the send"
    " to agent_response_start, the first agent message, agent_response_end",
    "memory": "memory: server RSS per connected idle client",
    "agents": "agents: half 1 watcher/agent, half {crowd:,}/agent;"
    " {rate:,g} events/s of {size} B in all, {duration:g} s",
    "tokens": "tokens: {token_rate:g} events/s per agent (deltas of 3-20 B), {watchers:,}"
    " watchers per agent, {laggards:.0%} of them laggards reading {laggard_pace:.0%} of the"
    " rate, {duration:g} s; keepers' delta latency with laggards and alone, every text checked",
    "tokens-v1": f"tokens-v1: {TOKEN_RATE:g} token deltas/s per agent,"
    " {watchers:,} watchers per agent, {duration:g} s",
    "observe": "observe (--url): frames received in {duration:g} s windows, as the server sends",
}


def _cell_text(cell: Cell, key: str, form: str) -> str:
    if cell.error is not None:
        return "error"
    value = cell.summary().get(key)
    return "-" if value is None or math.isnan(value) else form.format(value)


def points(cells: list[Cell]) -> list[Cell]:
    """The cells as reported: a cell whose rounds ran at several publish rates (``frontier``)
    becomes one cell per rate, each a point of its server's curve."""
    reported = []
    for cell in cells:
        rates = list(dict.fromkeys(r["rate"] for r in cell.rounds if "rate" in r))
        if len(rates) < 2:
            reported.append(cell)
            continue
        reported += [
            Cell(
                cell.workload,
                cell.server,
                cell.clients,
                [r for r in cell.rounds if r["rate"] == rate],
            )
            for rate in rates
        ]
    return reported


def tables(sweep: Sweep, settings: Settings) -> list[str]:
    """One table per workload: a row per server and client count (and publish rate, for
    ``frontier``), medians of the rounds."""
    lines: list[str] = []
    for workload, columns in COLUMNS.items():
        cells = [c for c in points(sweep.cells) if c.workload == workload]
        if not cells:
            continue
        server_width = max(len("server"), *(len(c.server) for c in cells))
        widths = [max(len(header), 10) for _, header, _ in columns]
        lines += ["", TITLES[workload].format(**vars(settings))]
        header = "  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths, strict=True))
        lines.append(f"{'server'.ljust(server_width)}  {'clients':>7}  {header}  rounds")
        for cell in cells:
            values = "  ".join(
                _cell_text(cell, key, form).rjust(width)
                for (key, _, form), width in zip(columns, widths, strict=True)
            )
            lines.append(
                f"{cell.server.ljust(server_width)}  {cell.clients:>7,}  {values}"
                f"  {len(cell.rounds)}/{settings.rounds}"
            )
    return lines


def notes(sweep: Sweep) -> list[str]:
    """Errors, skipped servers, cells whose receivers were saturated, and whether each
    agentcast frontier curve lies below each peer's."""
    lines = [f"skipped {server}: {why}" for server, why in sweep.skipped.items()]
    for cell in points(sweep.cells):
        where = f"{cell.workload} {cell.server} x {cell.clients:,}"
        if (rate := cell.summary().get("rate")) is not None:
            where += f" at {rate:,g} msg/s"
        if cell.error is not None:
            lines.append(f"error in {where}: {cell.error}")
        elif cell.summary().get("receiver_cpu", 0.0) >= SATURATED:
            lines.append(
                f"warning: the receivers were saturated in {where} "
                f"(a receiver CPU {cell.summary()['receiver_cpu']:.0%} busy): they may have set "
                "the pace, so this row measures them as much as the server"
                + ("; compare servers by server ns/deliv" if cell.workload == "burst" else "")
            )
    return lines + verdicts(points(sweep.cells))


def _json_safe(values: Round) -> dict[str, float | None]:
    """NaN (no samples) becomes null: JSON has no NaN."""
    return {key: None if math.isnan(value) else value for key, value in values.items()}


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def document(sweep: Sweep, settings: Settings, plan: CpuPlan, command: list[str]) -> dict[str, Any]:
    """Everything needed to compare runs later: settings, placement, every round."""
    return {
        "command": command,
        "settings": vars(settings),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "server_cpu": plan.server,
            "receiver_cpus": list(plan.receivers),
        },
        "results": [
            {
                "workload": c.workload,
                "server": c.server,
                "clients": c.clients,
                "summary": _json_safe(c.summary()),
                "rounds": [_json_safe(r) for r in c.rounds],
                "error": c.error,
            }
            for c in points(sweep.cells)
        ],
        "skipped": sweep.skipped,
    }
