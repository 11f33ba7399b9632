"""Every (workload, server, client count) cell in turn, with a progress line per cell."""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from agentcast.loadgen.harness import CpuPlan
from agentcast.loadgen.peers import PeerUnavailable
from agentcast.loadgen.workloads import Round, Settings, Workload


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
    progress: TextIO = sys.stderr,
) -> Sweep:
    """Run each cell; a failed cell records its error and the sweep goes on.

    A server whose library is missing (``PeerUnavailable``) is skipped for
    the rest of the sweep.
    """
    sweep = Sweep()
    total = len(workloads) * len(servers) * len(client_counts)
    index = 0
    for workload, measure in workloads.items():
        for server in servers:
            for clients in client_counts:
                index += 1
                if server in sweep.skipped:
                    continue
                print(
                    f"[{index:>{len(str(total))}}/{total}] {workload} {server} x {clients:,} ",
                    end="",
                    file=progress,
                    flush=True,
                )
                started = time.monotonic()
                cell = Cell(workload, server, clients)
                try:
                    cell.rounds = measure(
                        server,
                        clients,
                        settings,
                        plan,
                        lambda: print(".", end="", file=progress, flush=True),
                    )
                except PeerUnavailable as exc:
                    sweep.skipped[server] = str(exc)
                    print(f"skipped: {exc}", file=progress, flush=True)
                    continue
                except Exception as exc:
                    cell.error = f"{type(exc).__name__}: {exc}"
                    print(f" error: {cell.error.splitlines()[0]}", end="", file=progress)
                sweep.cells.append(cell)
                print(f" {time.monotonic() - started:.1f} s", file=progress, flush=True)
    return sweep
