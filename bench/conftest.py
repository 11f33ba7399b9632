"""Benchmark harness: CPU placement, servers with connected receivers, the fan-out summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from agentcast.bench.harness import (
    RECEIVER_CPU,
    SERVER_CPU,
    pin_to_cpu,
    raise_fd_limit,
    wait_until,
)
from agentcast.bench.peers import Peer
from agentcast.bench.receivers import ReceiverFleet
from results import FanoutRound, fanout_table

CONNECT_TIMEOUT = 60.0
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
            f"{type(peer).__name__} to register {clients} clients",
        )
        return fleet

    yield start
    for item in reversed(running):  # receivers first: servers then close idle sockets fast
        item.stop()


@pytest.fixture
def fanout_rounds(pytestconfig: pytest.Config) -> dict[tuple[str, int], list[FanoutRound]]:
    """Rounds of every fan-out benchmark, keyed by (server, clients), for the final table."""
    return pytestconfig.stash.setdefault(FANOUT_ROUNDS, {})


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    rounds = config.stash.get(FANOUT_ROUNDS, {})
    if not rounds:
        return
    terminalreporter.section("fan-out: deliveries/s, median of rounds")
    if config.stash.get(PINNED, False):
        terminalreporter.write_line(f"server on CPU {SERVER_CPU}, receivers on CPU {RECEIVER_CPU}")
    else:
        terminalreporter.write_line("not pinned to CPUs")
    for line in fanout_table(rounds):
        terminalreporter.write_line(line)
