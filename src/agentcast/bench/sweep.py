"""Every (workload, server, client count) cell in turn, each shown as it runs."""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass, field

from agentcast.bench.harness import CpuPlan
from agentcast.bench.peers import PeerUnavailable
from agentcast.bench.progress import Display
from agentcast.bench.workloads import Round, Settings, Workload


@dataclass
class Cell:
    """One workload's rounds for one server and client count, or why there are none."""

    workload: str
    server: str
    clients: int
    rounds: list[Round] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> Round:
        """Median of the rounds; lost deliveries add up; receiver CPU and the share of
        deliveries lost are the worst round's."""
        keys = dict.fromkeys(key for r in self.rounds for key in r)
        result: Round = {}
        for key in keys:
            values = [r[key] for r in self.rounds if key in r]
            if key == "lost":
                result[key] = sum(values)
            elif key in ("receiver_cpu", "lost_share"):
                result[key] = max(values)
            else:
                finite = [v for v in values if not math.isnan(v)]
                result[key] = statistics.median(finite) if finite else math.nan
        return result


@dataclass
class Sweep:
    cells: list[Cell] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # server -> why


def run_sweep(
    workloads: dict[str, Workload],
    servers: list[str],
    client_counts: list[int],
    settings: Settings,
    plan: CpuPlan,
    display: Display,
    label: str = "",
) -> Sweep:
    """Run each cell, showing its phases on ``display`` after ``label`` and the cell's own
    (``[2/4] burst agentcast x 100``); a failed cell records its error and the sweep goes on.

    A server whose library is missing (``PeerUnavailable``) is skipped for
    the rest of the sweep.
    """
    sweep = Sweep()
    cells = list(itertools.product(workloads, servers, client_counts))
    width = len(str(len(cells)))
    with display:
        for index, (workload, server, clients) in enumerate(cells, 1):
            if server in sweep.skipped:
                continue
            name = f"[{index:>{width}}/{len(cells)}] {workload} {server} x {clients:,}"
            progress = display.cell(label + name)
            cell = Cell(workload, server, clients)
            try:
                cell.rounds = workloads[workload](server, clients, settings, plan, progress)
            except PeerUnavailable as exc:
                sweep.skipped[server] = str(exc)
                progress.finish(f"skipped: {exc}")
                continue
            except Exception as exc:
                cell.error = f"{type(exc).__name__}: {exc}"
                progress.finish(f"error: {cell.error.splitlines()[0]}")
            else:
                progress.finish("done")
            sweep.cells.append(cell)
    return sweep
