"""``agentcast bench`` as a user runs it: real processes on 127.0.0.1, small and bounded.

Timings are never asserted (the machine is shared); what is checked is that
every cell ran, delivered everything, and reported its figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentcast.bench.frames import StampCounter
from agentcast.bench.messages import message
from agentcast.bench.receivers import sampled_connections
from redis_server import RedisServer
from reference import frame

BENCH = [sys.executable, "-m", "agentcast", "bench"]
TIMEOUT = 60


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=TIMEOUT)


def results(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    document = json.loads(path.read_text())
    return {(r["server"], r["clients"]): r for r in document["results"]}


def burst(
    tmp_path: Path, servers: str, clients: str, messages: str
) -> tuple[dict[tuple[str, int], dict[str, Any]], str]:
    """One burst round per cell; the cells from the JSON file and the terminal output."""
    out = tmp_path / "burst.json"
    result = bench(
        "--servers", servers, "--clients", clients, "--messages", messages,
        "--workload", "burst", "--rounds", "1", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return results(out), result.stdout


def test_burst_sweep_writes_every_cell(tmp_path: Path) -> None:
    cells, stdout = burst(tmp_path, "agentcast,websockets", "5,20", "50")
    assert set(cells) == {(s, c) for s in ("agentcast", "websockets") for c in (5, 20)}
    for cell in cells.values():
        assert cell["workload"] == "burst" and cell["error"] is None
        assert cell["summary"]["deliveries_per_s"] > 0
        assert cell["summary"]["server_ns"] > 0  # the server's CPU per delivery
        assert cell["summary"]["lost"] == 0
    assert "deliveries/s" in stdout and "server ns/deliv" in stdout


def test_latency_reports_percentiles_and_no_loss(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    result = bench(
        "--servers", "agentcast", "--clients", "12", "--workload", "latency",
        "--rate", "100", "--duration", "0.5", "--rounds", "1", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = results(out)["agentcast", 12]["summary"]
    assert summary["lost"] == 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_headroom_with_a_paced_agentcast_reports_latency_too(tmp_path: Path) -> None:
    out = tmp_path / "headroom.json"
    spec = "agentcast:flush_interval=0.01"
    result = bench(
        "--servers", f"agentcast,{spec}", "--clients", "12", "--workload", "headroom",
        "--rate", "200", "--duration", "0.5", "--rounds", "1", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cells = results(out)
    assert set(cells) == {("agentcast", 12), (spec, 12)}
    for cell in cells.values():
        summary = cell["summary"]
        assert cell["error"] is None and summary["lost"] == 0
        assert summary["headroom"] > 0
        assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert spec in result.stdout


def test_agentcast_over_channels_delivers_every_stream(tmp_path: Path) -> None:
    cells, _ = burst(tmp_path, "agentcast:channels=4", "12", "100")
    cell = cells["agentcast:channels=4", 12]
    assert cell["error"] is None and cell["summary"]["lost"] == 0


def test_scaled_out_agentcast_is_benchmarked_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    specs = [
        f"agentcast:backplane={redis_server.url}",
        f"agentcast:backplane={redis_server.url}:workers=2",
    ]
    cells, _ = burst(tmp_path, ",".join(specs), "12", "200")
    assert set(cells) == {(spec, 12) for spec in specs}
    for cell in cells.values():
        assert cell["error"] is None and cell["summary"]["lost"] == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--servers", "agentcast,nginx"], "unknown server 'nginx'"),
        (["--servers", "websockets:flush_interval=1"], "websockets does not take 'flush_interval'"),
        (["--servers", "agentcast:flush_interval=soon"], "flush_interval must be float"),
        (["--servers", "agentcast:pings=1"], "takes flush_interval, max_batch_bytes"),
        (["--servers", "agentcast:workers=2"], "workers > 1 needs backplane"),
        (["--clients", "10,0"], "expected client counts of at least 1"),
        (["--clients", "ten"], "like 10,100,1000"),
        (["--workload", "soak"], "invalid choice"),
        (["--size", "10"], "expected a size of 100-1048576 bytes"),
        (["--rate", "0"], "expected a number above 0"),
        (["--url", "ws://127.0.0.1:1/", "--workload", "latency"], "--url supports only"),
        (["--url", "http://127.0.0.1:1/"], "expected ws://"),
    ],
)
def test_bad_flags_are_one_line_with_exit_2(args: list[str], words: str) -> None:
    result = bench(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_stamp_counter_reads_send_times_across_split_reads() -> None:
    stream = b"".join(
        frame(orjson.dumps(message(seq, 300, sent_at=float(seq)))) for seq in range(3)
    ) + frame(b'{"no":"stamp"}')
    latencies: array[float] = array("d")
    counter = StampCounter(latencies)
    for start in range(0, len(stream), 7):  # cut headers and payloads anywhere
        chunk = stream[start : start + 7]
        counter.feed(chunk, len(chunk))
    assert counter.frames == 4 and counter.has(4)
    assert len(latencies) == 3
    assert latencies[0] > latencies[1] > latencies[2]  # sent at 0, 1, 2 s


def test_latency_sample_includes_the_last_connection() -> None:
    assert sampled_connections(12, 10) == [i in (0, 10, 11) for i in range(12)]
    assert sampled_connections(3, 0) == [False] * 3
