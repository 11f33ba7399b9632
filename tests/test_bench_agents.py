"""The ``agents`` and ``tokens-v1`` workloads: each watcher gets its own agent's messages and
no other's, every delivery is a latency sample, and the report has their rows. Real peers,
real sockets, run as a user runs ``agentcast bench`` (timings never asserted)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from agentcast.bench import peer_ratios
from agentcast.bench.harness import wait_until
from agentcast.bench.peers import Peer, create
from agentcast.bench.workloads import TOKEN_RATE, agents_shape, tokens_shape
from bench_runs import one_round

TIMEOUT = 120
PEERS = ["agentcast", "pyfanout"]


def test_the_chat_shape_is_half_lone_agents_half_crowds() -> None:
    assert agents_shape(2000, 100) == [1] * 1000 + [100] * 10
    assert agents_shape(250, 100) == [1] * 125 + [125]  # the last crowd takes the rest
    assert agents_shape(12, 3) == [1] * 6 + [3, 3]
    assert agents_shape(1, 100) == [1]
    for clients in (1, 2, 3, 99, 1001, 10_000):
        assert sum(agents_shape(clients, 100)) == clients


def test_the_token_shape_is_agents_of_w_watchers() -> None:
    assert tokens_shape(10_000, 100) == [100] * 100
    assert tokens_shape(250, 100) == [100, 150]
    assert tokens_shape(5, 100) == [5]


@pytest.fixture(params=PEERS)
def routed(request: pytest.FixtureRequest) -> Iterator[tuple[Peer, int]]:
    """A started peer whose first client watches agent-0, the next two agent-1; its port."""
    peer = create(request.param)
    port = peer.start()
    peer.route(["agent-0", "agent-1", "agent-1"])  # as the bench does: after start
    yield peer, port
    peer.stop()


def _until_end(client: ClientConnection) -> list[dict[str, Any]]:
    """The events a watcher got before its agent's end marker."""
    events = []
    while (event := json.loads(client.recv(timeout=10)))["text"] != "end":
        events.append(event)
    return events


def test_each_watcher_gets_its_own_agents_messages_only(routed: tuple[Peer, int]) -> None:
    peer, port = routed
    with contextlib.ExitStack() as stack:
        clients = []
        for count in range(1, 4):  # one at a time: the k-th to connect watches route[k]
            clients.append(stack.enter_context(connect(f"ws://127.0.0.1:{port}/")))
            wait_until(lambda count=count: peer.client_count == count, 10, "the watcher")
        for n in range(3):
            peer.publish_to("agent-0", {"t": 0.0, "agent": "agent-0", "n": n, "text": "x"})
        for n in range(2):
            peer.publish_to("agent-1", {"t": 0.0, "agent": "agent-1", "n": n, "text": "y"})
        for agent in ("agent-0", "agent-1"):
            peer.publish_to(agent, {"t": 0.0, "agent": agent, "n": -1, "text": "end"})
        got = [[(e["agent"], e["n"]) for e in _until_end(client)] for client in clients]
    assert got[0] == [("agent-0", n) for n in range(3)]
    assert got[1] == got[2] == [("agent-1", n) for n in range(2)]


def _bench(tmp_path: Path, *args: str) -> tuple[str, dict[tuple[str, str], dict[str, Any]]]:
    """One bench run: its stdout, and its cells keyed by (workload, server)."""
    stdout, results = one_round(tmp_path, *args, timeout=TIMEOUT)
    return stdout, {(r["workload"], r["server"]): r for r in results}


def test_agents_and_tokens_v1_deliver_each_agents_events_to_its_watchers_only(
    tmp_path: Path,
) -> None:
    """Every connection is owed the events of one agent; the receivers wait until each has
    that many, and the total counted is exactly the owed total, so no connection got more
    (another agent's events) and none fewer. Every delivery is a latency sample."""
    clients, duration, rate = 12, 0.5, 60.0
    stdout, cells = _bench(
        tmp_path,
        "--servers", ",".join(PEERS), "--workload", "agents,tokens-v1", "--clients", str(clients),
        "--crowd", "3", "--watchers", "4", "--rate", str(rate), "--duration", str(duration),
    )  # fmt: skip
    agents_count = len(agents_shape(clients, 3))  # 6 lone agents and 2 of 3 watchers
    owed = {
        "agents": clients * round(rate / agents_count * duration),
        "tokens-v1": clients * round(TOKEN_RATE * duration),
    }
    assert set(cells) == {(w, p) for w in owed for p in PEERS}
    for (workload, _), cell in cells.items():
        summary = cell["summary"]
        assert cell["error"] is None
        assert summary["lost"] == 0
        assert summary["deliveries"] == owed[workload]
        assert summary["latency_samples"] == owed[workload]
        assert summary["server_ns"] > 0 and summary["p99_ms"] > 0
        # the bench's publisher, timed alone, is taken out of the server's figure
        assert summary["publisher_ns"] > 0
        assert summary["server_ns"] < summary["process_ns"]
    assert cells["agents", "agentcast"]["summary"]["agents"] == agents_count
    assert cells["tokens-v1", "pyfanout"]["summary"]["agents"] == clients // 4
    lines = stdout.splitlines()
    for title in ("agents: half 1 watcher/agent", "tokens-v1: 50 token deltas/s per agent"):
        at = next(i for i, line in enumerate(lines) if line.startswith(title))
        rows = [line.split()[:2] for line in lines[at + 2 : at + 4]]
        assert rows == [[peer, str(clients)] for peer in PEERS]
    at = lines.index(peer_ratios.TITLE)
    ratios = [line.split() for line in lines[at + 2 : at + 4]]
    assert [row[:5] for row in ratios] == [
        [workload, "agentcast", "/", "pyfanout", str(clients)] for workload in owed
    ]
    assert all(value.endswith("x") for row in ratios for value in row[5:])
