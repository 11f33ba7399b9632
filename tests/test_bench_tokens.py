"""The ``tokens`` workload (issue 22): agents' token deltas to native-protocol watchers, some
lagging. Its stream and checks without I/O, then one small run as a user runs ``agentcast
bench``, against agentcast set to merge early and a peer without streams: every text
identical, no closes, the laggards sent merged deltas by agentcast (timings never asserted)."""

from __future__ import annotations

import subprocess
from array import array
from pathlib import Path

import orjson
import pytest

from agentcast.bench import peer_ratios
from agentcast.bench.histogram import Histogram
from agentcast.bench.sweep import Cell, Sweep
from agentcast.bench.token_script import agent_stream, envelope, stream_bytes, stream_texts
from agentcast.bench.token_watchers import Expected, Stream, StreamCheck
from agentcast.bench.tokens import laggard_places, plan
from agentcast.streams.encodings import native
from agentcast.streams.events import check_event
from bench_runs import BENCH, one_round

TIMEOUT = 180
MERGING = "agentcast:lag_threshold=4096:notsent_lowat=4096"


def test_an_agents_stream_is_runs_of_messages_with_deltas_of_3_to_20_bytes() -> None:
    events = agent_stream("agent-0", 500, seed=7)
    assert events == agent_stream("agent-0", 500, seed=7)  # every process makes the same
    assert events != agent_stream("agent-1", 500, seed=7)
    assert 500 <= len(events) <= 503
    for event in events:
        check_event(event)
    deltas = [e["delta"].encode() for e in events if e["type"] == "message_delta"]
    assert len(deltas) > 0.9 * len(events)
    assert all(3 <= len(delta) <= 20 for delta in deltas)
    assert any(max(delta) > 127 for delta in deltas)  # multi-byte UTF-8
    assert any(b'"' in delta or b"\\" in delta for delta in deltas)  # escaped in JSON
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert kinds.count("message_start") == kinds.count("message_end") > 1


def test_the_peers_are_handed_the_frames_agentcast_sends() -> None:
    events = agent_stream("agent-3", 50, seed=1)
    for seq, event in enumerate(events, 1):
        assert orjson.dumps(envelope(event, "agent-3", seq)) == native("agent-3", event, seq)
    payloads = [len(native("agent-3", event, seq)) for seq, event in enumerate(events, 1)]
    assert stream_bytes(events, "agent-3") == sum(payloads) + 2 * len(events)  # 2-byte headers


def test_laggards_are_spread_among_each_agents_watchers() -> None:
    assert laggard_places(100, 0.1) == {5, 15, 25, 35, 45, 55, 65, 75, 85, 95}
    assert laggard_places(4, 0.1) == {2}  # at least one for a share above 0
    assert laggard_places(4, 0.0) == set()
    connections = plan([4, 5], 0.25)
    assert [agent for agent, _ in connections] == ["agent-0"] * 4 + ["agent-1"] * 5
    lagging = [False, False, True, False, False]
    assert [lag for _, lag in connections] == lagging[:4] + lagging


def _frames(events: list[dict[str, object]], channel: str) -> list[dict[str, object]]:
    return [orjson.loads(native(channel, e, seq)) for seq, e in enumerate(events, 1)]


def test_a_check_takes_merged_deltas_and_catches_gaps_repeats_and_wrong_text() -> None:
    stream = Stream(at_least=60, seed=3, laggard_rate=1.0)
    events = agent_stream("agent-0", 60, seed=3)
    frames = _frames(events, "agent-0")
    expected = Expected("agent-0", stream)
    assert expected.texts == stream_texts(events)

    whole = StreamCheck(expected, timed=True)
    assert [whole.event(f, 1.0) for f in frames][-1] is True
    assert whole.complete and whole.text_complete() and not whole.stream_faults()

    # deltas 3..10 of the first message merged into one frame, as a laggard gets them
    first, last = 3, 10
    assert all(frames[s - 1]["type"] == "message_delta" for s in range(first, last + 1))
    merged = dict(frames[last - 1], from_seq=first)
    merged["delta"] = "".join(str(frames[s - 1]["delta"]) for s in range(first, last + 1))
    lagging = StreamCheck(expected, timed=True)
    for frame in [*frames[: first - 1], merged, *frames[last:]]:
        lagging.event(frame, 2.0)
    assert lagging.text_complete() and not lagging.stream_faults() and lagging.merged == 1
    published = array("d", [1.0 + s / 1000 for s in range(len(events))])
    histogram = Histogram()
    lagging.latencies(published, histogram)
    assert histogram.total == sum(e["type"] == "message_delta" for e in events)  # each delta

    def faults(changed: list[dict[str, object]]) -> tuple[int, bool, bool]:
        check = StreamCheck(expected, timed=False)
        for frame in changed:
            check.event(frame, 1.0)
        return check.stream_faults(), check.text_complete(), check.complete

    gap = frames[:4] + frames[5:]
    assert faults(gap) == (1, False, True)
    assert faults(frames[:5] + frames[4:])[0] >= 1  # a repeat
    wrong = [dict(f) for f in frames]
    wrong[3]["delta"] = str(wrong[3]["delta"]) + "!"
    assert faults(wrong) == (0, False, True)
    assert faults(frames[:-1]) == (1, True, False)  # run_end missing: a boundary short


def _cell(server: str, **summary: float) -> Cell:
    return Cell("tokens", server, 10, [dict(summary)])


def test_each_agentcast_setting_is_set_against_agentcast_with_fewer() -> None:
    figures = {"process_ns": 1.0, "p99_ms": 1.0, "alone_p99_ms": 1.0}
    sweep = Sweep(
        [
            _cell("agentcast", **figures),
            _cell("agentcast:release_gil=1", **figures),
            _cell(MERGING, **figures),
            _cell(MERGING + ":release_gil=1", **{**figures, "p99_ms": 0.5}),
            _cell("pyfanout", **figures),
        ]
    )
    lines = peer_ratios.table(sweep)
    at = lines.index(peer_ratios.SETTINGS_TITLE)
    rows = [line.split() for line in lines[at + 2 :]]
    assert [row[1:4] for row in rows] == [
        ["agentcast:release_gil=1", "/", "agentcast"],
        [MERGING, "/", "agentcast"],
        [MERGING + ":release_gil=1", "/", MERGING],
    ]
    assert rows[2][5:] == ["1.00x", "0.50x", "1.00x"]
    peers = lines[lines.index(peer_ratios.TITLE) + 2 : at - 1]
    assert len(peers) == 4 and all(" / pyfanout" in line for line in peers)


@pytest.mark.parametrize(
    ("flag", "value"), [("--laggards", "1.5"), ("--laggard-pace", "1"), ("--token-rate", "0")]
)
def test_bad_tokens_flags_are_refused_by_name(flag: str, value: str) -> None:
    result = subprocess.run(
        [*BENCH, "--workload", "tokens", flag, value], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert f"argument {flag}: " in result.stderr


def test_a_small_run_checks_every_text_and_agentcast_merges_for_its_laggards(
    tmp_path: Path,
) -> None:
    """2 agents x 4 watchers, 1 laggard each reading a tenth of its stream's bytes/s, 2 s at
    200 events/s: agentcast told to merge early (TCP_NOTSENT_LOWAT and lag_threshold of
    4 KiB) falls behind for the laggards within the run and merges their deltas; pyfanout
    sends every delta as its own frame. Every watcher's text is checked in both runs."""
    stdout, results = one_round(
        tmp_path,
        "--workload", "tokens", "--servers", f"{MERGING},pyfanout", "--clients", "8",
        "--watchers", "4", "--laggards", "0.25", "--laggard-pace", "0.1",
        "--token-rate", "200", "--duration", "2",
        timeout=TIMEOUT,
    )  # fmt: skip
    cells = {r["server"]: r for r in results}
    assert set(cells) == {MERGING, "pyfanout"}
    for server, cell in cells.items():
        summary = cell["summary"]
        assert cell["error"] is None, server
        assert (summary["agents"], summary["laggards"]) == (2, 2)
        assert summary["text_faults"] == 0, server
        assert summary["stream_faults"] == 0, server
        assert summary["closes"] == 0, server
        assert summary["lost"] == 0, server
        assert summary["latency_samples"] > 0 and summary["p99_ms"] > 0
        assert summary["alone_p99_ms"] > 0
    merging = cells[MERGING]["summary"]
    assert merging["laggard_merged"] > 0
    assert merging["merged_deltas"] > 0 and merging["lag_episodes"] >= 1
    assert merging["frames_share"] < 1 and merging["bytes_share"] < 1
    unmerged = cells["pyfanout"]["summary"]
    assert unmerged["laggard_merged"] == 0
    assert unmerged["laggard_frames"] == unmerged["unmerged_frames"]
    assert stdout.count("\n" + MERGING + " ") == 1  # its row in the table
    assert f"{MERGING} / pyfanout" in stdout  # and in the ratios
