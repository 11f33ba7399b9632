"""Benchmark harness: CPU placement, servers with connected receivers, the fan-out summary."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from harness import RECEIVER_CPU, SERVER_CPU, pin_to_cpu, raise_fd_limit, wait_until
from peers import Peer
from receivers import ReceiverFleet

CONNECT_TIMEOUT = 60.0


@dataclass(frozen=True)
class FanoutRound:
    deliveries_per_s: float
    receiver_cpu_share: float  # receiver CPU time / round time: near 1.0 would mean it limits


FANOUT_ROUNDS = pytest.StashKey[dict[tuple[str, int], list[FanoutRound]]]()
PINNED = pytest.StashKey[bool]()


@pytest.fixture(scope="session", autouse=True)
def server_placement(pytestconfig: pytest.Config) -> Iterator[None]:
    """Pin this thread to SERVER_CPU before any server thread exists: they inherit it."""
    raise_fd_limit()
    original = os.sched_getaffinity(0)
    pytestconfig.stash[PINNED] = pin_to_cpu(SERVER_CPU)
    yield
    os.sched_setaffinity(0, original)


@pytest.fixture
def serve() -> Iterator[Callable[[Peer, int], ReceiverFleet | None]]:
    """``serve(peer, clients)``: start ``peer``, connect ``clients`` receivers, stop both after.

    Returns once the server itself counts every client, or None for 0 clients.
    """
    running: list[Peer | ReceiverFleet] = []

    def start(peer: Peer, clients: int) -> ReceiverFleet | None:
        port = peer.start()
        running.append(peer)
        if not clients:
            return None
        fleet = ReceiverFleet(port, clients)
        running.append(fleet)
        fleet.start()
        wait_until(
            lambda: peer.client_count == clients,
            CONNECT_TIMEOUT,
            f"{peer.name} to register {clients} clients",
        )
        return fleet

    yield start
    for item in reversed(running):  # receivers first: servers then close idle sockets fast
        item.stop()


@pytest.fixture
def fanout_rounds(pytestconfig: pytest.Config) -> dict[tuple[str, int], list[FanoutRound]]:
    """Rounds of every fan-out benchmark, keyed by (server, clients), for the final table."""
    return pytestconfig.stash.setdefault(FANOUT_ROUNDS, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rounds = config.stash.get(FANOUT_ROUNDS, {})
    if not rounds:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fan-out: deliveries/s, median of rounds")
    placement = (
        f"server on CPU {SERVER_CPU}, receivers on CPU {RECEIVER_CPU}"
        if config.stash.get(PINNED, False)
        else "not pinned"
    )
    write(placement)
    write(f"{'clients':>7}  {'agentcast':>12}  {'websockets':>12}  {'ratio':>7}  receiver CPU")
    for clients in sorted({clients for _, clients in rounds}):
        medians = {}
        shares = []
        for server in ("agentcast", "websockets"):
            runs = rounds.get((server, clients), [])
            medians[server] = statistics.median(r.deliveries_per_s for r in runs) if runs else 0
            shares.append(f"{max((r.receiver_cpu_share for r in runs), default=0):.0%}")
        ratio = medians["agentcast"] / medians["websockets"] if medians["websockets"] else 0
        write(
            f"{clients:>7}  {medians['agentcast']:>12,.0f}  {medians['websockets']:>12,.0f}"
            f"  {ratio:>6.1f}x  {' / '.join(shares)} (max)"
        )
