"""Every peer that can serve ``wss://`` does it with ``:tls``, so a TLS run compares agentcast
with the peers; a server run both ways gets its TLS / plain ratios in the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentcast.bench import ratios, tls_ratios
from agentcast.bench.peers import parse_spec
from agentcast.bench.sweep import Cell, Sweep

BENCH = [sys.executable, "-m", "agentcast", "bench", "--rounds", "1"]
SMALL = ["--messages", "60", "--rate", "100", "--duration", "0.3"]
TIMEOUT = 120


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result


def test_the_peers_serve_burst_and_latency_over_tls(tmp_path: Path) -> None:
    servers = ["memgpt:tls", "websockets:tls", "picows:tls", "pyfanout:tls"]
    out = tmp_path / "tls.json"
    bench(
        "--servers", ",".join(servers), "--clients", "4", "--workload", "burst,latency",
        *SMALL, "--json", str(out),
    )  # fmt: skip
    results = json.loads(out.read_text())["results"]
    assert {(r["workload"], r["server"]) for r in results} == {
        (workload, server) for workload in ("burst", "latency") for server in servers
    }
    for result in results:
        assert result["error"] is None and result["summary"]["lost"] == 0, result
    for result in results:
        if result["workload"] == "latency":
            assert 0 < result["summary"]["p50_ms"] <= result["summary"]["p99_ms"], result


def test_a_server_run_both_ways_gets_its_tls_over_plain_ratios() -> None:
    result = bench(
        "--servers", "websockets,websockets:tls", "--clients", "3",
        "--workload", "burst,latency", *SMALL,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    table = lines[lines.index(tls_ratios.TITLE) :]
    rows = [line.split() for line in table if line.startswith("websockets:tls")]
    assert len(rows) == 1, result.stdout
    _, clients, *ratios = rows[0]
    assert clients == "3" and len(ratios) == len(tls_ratios.RATIOS)
    assert all(ratio.endswith("x") and float(ratio[:-1]) > 0 for ratio in ratios), rows


def cell(workload: str, server: str, **summary: float) -> Cell:
    return Cell(workload, server, 10, rounds=[summary])


def test_a_tls_server_is_compared_with_its_own_settings_without_tls_only() -> None:
    sweep = Sweep(
        [
            cell("burst", "agentcast", deliveries_per_s=100.0),
            cell("burst", "agentcast:flush_interval=0.02", deliveries_per_s=50.0),
            cell("burst", "agentcast:tls:flush_interval=0.02", deliveries_per_s=10.0),
            cell("burst", "picows:tls", deliveries_per_s=1.0),  # no plain picows: no row
        ]
    )
    rows = [line.split() for line in tls_ratios.table(sweep)[3:]]
    assert rows == [["agentcast:tls:flush_interval=0.02", "10", "0.20x", "-", "-", "-"]]


@pytest.mark.parametrize(
    ("over", "under", "shown"),
    [(10.0, 100.0, "0.10x"), (6.5, 11534.0, "0.00056x"), (3.0, 1.0, "3.00x")],
)
def test_a_ratio_far_below_one_keeps_two_significant_digits(
    over: float, under: float, shown: str
) -> None:
    ours, theirs = (
        cell("latency", "agentcast", p99_ms=over),
        cell("latency", "memgpt", p99_ms=under),
    )
    assert ratios.ratio(ours, theirs, "p99_ms") == shown


@pytest.mark.parametrize("server", ["memgpt", "websockets", "picows", "pyfanout", "agentcast"])
def test_tls_is_a_setting_of_every_peer_that_can_serve_it(server: str) -> None:
    assert parse_spec(f"{server}:tls") == (server, {"tls": 1})
