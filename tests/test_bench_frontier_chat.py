"""``agentcast bench --workload frontier`` and ``--workload chat``, run as a user runs them.

Real processes on 127.0.0.1, small and bounded; timings are never asserted (the machine is
shared): what is checked is that every point and request was measured and reported.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentcast.bench.chat import PHASES
from agentcast.bench.frontier import compare
from agentcast.bench.workloads import FRONTIER_LOADS
from redis_server import free_port
from serve_cli import AGENTCAST, serving

TIMEOUT = 120


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTCAST, "bench", *args], capture_output=True, text=True, timeout=TIMEOUT
    )


def results(path: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = json.loads(path.read_text())["results"]
    return results


@pytest.fixture
def served() -> Iterator[int]:
    """``agentcast serve`` (its demo agent), no limit on requests a second."""
    with serving("--log-level", "WARNING", "--max-message-rate", "0") as (_, port):
        yield port


def test_frontier_gives_each_server_a_point_per_rate_and_draws_them(tmp_path: Path) -> None:
    servers = ["agentcast:flush_interval=0.005", "pyfanout"]
    out, png = tmp_path / "frontier.json", tmp_path / "frontier.png"
    result = bench(
        "--workload", "frontier", "--servers", ",".join(servers), "--clients", "4",
        "--rate", "40", "--duration", "0.3", "--rounds", "1",
        "--json", str(out), "--plot", str(png),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cells = results(out)
    rates = sorted(40 * load for load in FRONTIER_LOADS)
    for server in servers:
        points = [c for c in cells if c["server"] == server]
        assert sorted(c["summary"]["rate"] for c in points) == rates
        for point in points:
            assert point["error"] is None and point["summary"]["lost"] == 0
            assert point["summary"]["headroom"] > 0 and point["summary"]["p99_ms"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout.count("frontier: p99 against agent headroom") == 1
    verdict = f"frontier x 4: {servers[0]} vs pyfanout: "
    assert verdict in result.stdout, result.stdout


def test_curves_that_cross_are_not_below_everywhere() -> None:
    pyfanout = [(0.4, 30.0), (0.6, 40.0)]
    below = compare("a", [(0.3, 5.0), (0.5, 10.0), (0.7, 20.0)], "pyfanout", pyfanout)
    assert below.below_everywhere and (below.low, below.high) == (0.4, 0.6)
    crossing = compare("a", [(0.4, 10.0), (0.6, 50.0)], "pyfanout", pyfanout)
    assert not crossing.below_everywhere  # lower at 40 %, higher at 60 %
    apart = compare("a", [(0.1, 1.0), (0.2, 2.0)], "pyfanout", pyfanout)
    assert not apart.below_everywhere and not apart.checks  # no headroom in common
    assert "nothing to compare" in apart.describe()


def _assert_every_request_answered(cell: dict[str, Any]) -> None:
    assert cell["error"] is None, cell["error"]
    assert cell["rounds"], cell
    for round_ in cell["rounds"]:
        assert round_["requests"] > 0 and round_["requests_per_s"] > 0
        assert round_["lost"] == 0 and round_["errors"] == 0
        assert round_["no_agent_message"] == 0  # each answer's agent message came before its end
        for share in ("p50", "p99"):
            start, first, end = (round_[f"{phase}_{share}_ms"] for phase in PHASES)
            assert not math.isnan(start) and 0 < start <= first <= end


def test_chat_against_a_running_agentcast_serve(served: int, tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    url = f"ws://127.0.0.1:{served}/"
    result = bench(
        "--workload", "chat", "--url", url, "--clients", "3", "--duration", "0.5",
        "--rounds", "2", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (cell,) = results(out)
    assert cell["workload"] == "chat" and cell["server"] == url
    _assert_every_request_answered(cell)
    assert len(cell["rounds"]) == 2
    assert "1st msg p99 ms" in result.stdout and "unanswered" in result.stdout
    assert "server on CPU" not in result.stderr  # it started none


def test_chat_reports_clients_the_server_closed_not_a_rate(tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    with serving("--log-level", "WARNING") as (_, port):  # a default limit on requests a second
        result = bench(
            "--workload", "chat", "--url", f"ws://127.0.0.1:{port}/", "--clients", "3",
            "--duration", "0.5", "--rounds", "1", "--json", str(out),
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    (cell,) = results(out)
    assert cell["rounds"] == [] and "requests_per_s" not in cell["summary"]
    closed = "the server closed 3 of 3 clients with 1008 (message rate limit exceeded)"
    assert closed in cell["error"] and closed in result.stdout, result.stdout
    assert "server on CPU" not in result.stderr


def test_chat_starts_agentcast_serve_and_the_memgpt_peer(tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    servers = ["agentcast", "memgpt:end_pause=0.05"]  # MemGPT's own pause is 1 s
    result = bench(
        "--workload", "chat", "--servers", ",".join(servers), "--clients", "2",
        "--duration", "0.5", "--rounds", "1", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cells = {c["server"]: c for c in results(out)}
    assert set(cells) == set(servers)
    for cell in cells.values():
        _assert_every_request_answered(cell)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("wss://127.0.0.1:1/", "expected ws://"),
        ("ws://127.0.0.1:{port}/", "nothing accepts connections at 127.0.0.1:{port}"),
        ("ws://127.0.0.1:port/", "--url"),
    ],
)
def test_bad_chat_url_is_one_line_with_exit_2(url: str, words: str) -> None:
    port = str(free_port())  # nothing listens there
    result = bench("--workload", "chat", "--url", url.format(port=port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words.format(port=port) in lines[0], result.stderr


def test_chat_refuses_a_server_that_does_not_answer_requests(tmp_path: Path) -> None:
    result = bench("--workload", "chat", "--servers", "websockets", "--clients", "1")
    assert result.returncode == 1
    assert "websockets does not answer MemGPT requests" in result.stdout, result.stdout
