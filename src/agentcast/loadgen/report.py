"""The sweep's results as a terminal table and a JSON document (``plot`` draws the PNG)."""

from __future__ import annotations

import math
import os
import platform
from typing import Any

from agentcast.loadgen.harness import CpuPlan
from agentcast.loadgen.sweep import Cell, Sweep
from agentcast.loadgen.workloads import TOKEN_RATE, Round, Settings

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
    "memory": [
        ("kib_per_client", "KiB/client", "{:,.1f}"),
        ("idle_rss_mb", "RSS, no clients MB", "{:,.1f}"),
    ],
    "agents": [
        ("agents", "agents", "{:,.0f}"),
        ("deliveries_per_s", "deliveries/s", "{:,.0f}"),
        ("server_ns", "server ns/deliv", "{:,.1f}"),
        ("server_cpu", "server CPU", "{:.0%}"),
        ("p50_ms", "p50 ms", "{:,.2f}"),
        ("p99_ms", "p99 ms", "{:,.2f}"),
        ("worst_client_p99_ms", "worst client p99 ms", "{:,.2f}"),
        ("latency_samples", "samples", "{:,.0f}"),
        ("lost", "lost", "{:,.0f}"),
        ("receiver_cpu", "recv CPU", "{:.0%}"),
    ],
    "tokens": [
        ("agents", "agents", "{:,.0f}"),
        ("deliveries_per_s", "deltas/s", "{:,.0f}"),
        ("p50_ms", "p50 ms", "{:,.2f}"),
        ("p99_ms", "p99 ms", "{:,.2f}"),
        ("max_ms", "max ms", "{:,.2f}"),
        ("server_cpu", "server CPU", "{:.0%}"),
        ("server_ns", "server ns/deliv", "{:,.1f}"),
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
TITLES = {
    "burst": "burst: {messages:,} x {size} B published back to back",
    "latency": "latency: {rate:,g} msg/s of {size} B for {duration:g} s",
    "publish": "publish: one publish() call, {messages:,} back to back; (0): no clients",
    "headroom": "headroom: agent work rate at {rate:,g} msg/s over its idle rate",
    "memory": "memory: server RSS per connected idle client",
    "agents": "agents: half 1 watcher/agent, half {crowd:,}/agent;"
    " {rate:,g} events/s of {size} B in all, {duration:g} s",
    "tokens": f"tokens: {TOKEN_RATE:g} token deltas/s per agent,"
    " {watchers:,} watchers per agent, {duration:g} s",
    "observe": "observe (--url): frames received in {duration:g} s windows, as the server sends",
}


def _cell_text(cell: Cell, key: str, form: str) -> str:
    if cell.error is not None:
        return "error"
    value = cell.summary().get(key)
    return "-" if value is None or math.isnan(value) else form.format(value)


def tables(sweep: Sweep, settings: Settings) -> list[str]:
    """One table per workload: a row per server and client count, medians of the rounds."""
    lines: list[str] = []
    for workload, columns in COLUMNS.items():
        cells = [c for c in sweep.cells if c.workload == workload]
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
    """Errors, skipped servers, and cells whose receivers were saturated."""
    lines = [f"skipped {server}: {why}" for server, why in sweep.skipped.items()]
    for cell in sweep.cells:
        where = f"{cell.workload} {cell.server} x {cell.clients:,}"
        if cell.error is not None:
            lines.append(f"error in {where}: {cell.error}")
        elif cell.summary().get("receiver_cpu", 0.0) >= SATURATED:
            lines.append(
                f"warning: the receivers were saturated in {where} "
                f"(a receiver CPU {cell.summary()['receiver_cpu']:.0%} busy): they may have set "
                "the pace, so this row measures them as much as the server"
                + ("; compare servers by server ns/deliv" if cell.workload == "burst" else "")
            )
    return lines


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
            for c in sweep.cells
        ],
        "skipped": sweep.skipped,
    }
