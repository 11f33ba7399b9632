"""``agentcast bench`` with ``agentcast:tls``: the server spec, the throwaway certificate and
receivers that count frames over TLS, run as a user runs them (timings never asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentcast.bench.peers import parse_spec
from bench_runs import one_round

TIMEOUT = 90


def bench(tmp_path: Path, *args: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    """One bench run; its cells keyed by (workload, server, clients)."""
    _, results = one_round(tmp_path, *args, timeout=TIMEOUT)
    return {(r["workload"], r["server"], r["clients"]): r for r in results}


def test_burst_and_latency_over_tls_deliver_every_frame(tmp_path: Path) -> None:
    servers = ("agentcast", "agentcast:tls", "agentcast:tls:transport=aiofastnet")
    cells = bench(
        tmp_path,
        "--servers", ",".join(servers), "--clients", "12",
        "--workload", "burst,latency", "--messages", "100", "--rate", "100", "--duration", "0.5",
    )  # fmt: skip
    assert set(cells) == {
        (workload, server, 12) for workload in ("burst", "latency") for server in servers
    }
    for cell in cells.values():
        assert cell["error"] is None and cell["summary"]["lost"] == 0
    burst = cells["burst", "agentcast:tls", 12]["summary"]
    assert burst["deliveries_per_s"] > 0 and burst["mb_per_s"] > 0
    latency = cells["latency", "agentcast:tls", 12]["summary"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]


def test_frames_larger_than_a_tls_record_are_counted(tmp_path: Path) -> None:
    """50 KB messages: each frame spans several TLS records, and several records are
    decrypted into one read."""
    cells = bench(
        tmp_path,
        "--servers", "agentcast:tls", "--clients", "5", "--workload", "burst",
        "--messages", "40", "--size", "50000",
    )  # fmt: skip
    cell = cells["burst", "agentcast:tls", 5]
    assert cell["error"] is None and cell["summary"]["lost"] == 0
    assert cell["summary"]["mb_per_s"] > 0


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("agentcast:tls", ("agentcast", {"tls": 1})),
        ("agentcast:tls=0", ("agentcast", {"tls": 0})),
        (
            "agentcast:tls:flush_interval=0.02",
            ("agentcast", {"tls": 1, "flush_interval": 0.02}),
        ),
        (
            "agentcast:backplane=redis://127.0.0.1:6379/0:tls",
            ("agentcast", {"backplane": "redis://127.0.0.1:6379/0", "tls": 1}),
        ),
    ],
)
def test_tls_is_a_bare_setting_of_the_agentcast_spec(
    spec: str, parsed: tuple[str, dict[str, Any]]
) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("socketify:tls", "socketify does not take 'tls'"),
        ("agentcast:tls:backplane=redis://127.0.0.1:1/0:workers=2", "tls is not benchmarked"),
    ],
)
def test_tls_spec_errors_name_the_problem(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_spec(spec)
