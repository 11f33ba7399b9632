"""``--url``: watch a server that is already running, by counting the frames its clients get.

The benchmark cannot publish into another process, so this does not time
bursts: it connects the receivers and reports what they receive during
``duration`` seconds, whatever the server's own agents publish. Every frame
counts, pings included.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from agentcast.bench.harness import CpuPlan
from agentcast.bench.progress import Progress, tally
from agentcast.bench.receivers import ReceiverFleet
from agentcast.bench.workloads import Round, Settings

REACH_TIMEOUT = 5.0  # seconds for --url's server to accept a connection


def parse_url(url: str) -> tuple[str, int, str]:
    """``ws://host[:port][/path]`` -> (host, port, path); ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"expected ws://host[:port]/path, not {url!r} (wss:// is not supported)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def reachable(host: str, port: int, timeout: float = REACH_TIMEOUT) -> None:
    """Return once something accepts a TCP connection at ``host:port``; OSError saying
    where nothing does."""
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError as exc:
        raise OSError(
            f"nothing accepts connections at {host}:{port} ({exc.strerror or exc})"
        ) from None


def observe(
    url: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """Frames/s and MB/s over all ``clients`` connections, one ``duration`` window per round."""
    host, port, path = parse_url(url)
    connected = tally(progress, "connecting", clients)
    fleet = ReceiverFleet(
        port,
        clients,
        host=host,
        path=path,
        processes=len(plan.receivers),
        cpus=plan.receivers,
        receiver=settings.receiver,
    ).start(connected)
    rounds: list[Round] = []
    try:
        for number in range(1, settings.rounds + 1):
            progress.phase(f"round {number}/{settings.rounds}")
            before = fleet.snapshot()
            time.sleep(settings.duration)
            after = fleet.snapshot()
            wall = after.at - before.at
            busiest = max(b - a for a, b in zip(before.cpu_seconds, after.cpu_seconds, strict=True))
            rounds.append(
                {
                    "deliveries_per_s": (after.frames - before.frames) / wall,
                    "mb_per_s": (after.bytes - before.bytes) / wall / 1e6,
                    "receiver_cpu": busiest / wall,
                }
            )
    finally:
        fleet.stop()
    return rounds
