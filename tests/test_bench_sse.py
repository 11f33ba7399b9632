"""``bench/sse.py``: its SSE parser and AG-UI view without I/O, its watchers catching a
stream whose text differs from the one they expect (over each transport and encoding, on
real sockets), and the script run end to end at a tiny size (timings never asserted)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from multiprocessing import resource_tracker
from pathlib import Path

import orjson
import pytest

from agentcast import Broadcaster
from agentcast.bench.stream_watchers import Group, SseParser, StreamWatchers, agui_view
from agentcast.bench.token_script import agent_stream
from agentcast.bench.token_watchers import Stream
from agentcast.streams.protocols import agui

SCRIPT = Path(__file__).parent.parent / "bench" / "sse.py"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n"


@pytest.fixture(scope="module", autouse=True)
def _resource_tracker() -> None:
    """The watcher process starts multiprocessing's resource tracker, whose pipe stays open
    for the life of the process: start it before any test counts fds."""
    resource_tracker.ensure_running()


def test_the_parser_reads_events_comments_and_any_line_end_in_any_pieces() -> None:
    stream = (
        HEAD + b': ack\n\nid: 1\ndata: {"a":1}\n\n'
        b"id: 2\r\ndata: x\r\ndata:y\r\n\r\n"  # CRLF; no space after the colon
        b"id: 3\rdata: z\r\r"  # CR
        b"event: e\ndata\n\n"  # an empty data line
        b": ping\n\n"
    )
    whole = SseParser()
    events = whole.feed(stream)
    assert events == [(b"1", b'{"a":1}'), (b"2", b"x\ny"), (b"3", b"z"), (b"3", b"")]
    assert whole.comments == 2 and whole.last_comment == b": ping"
    bytewise = SseParser()
    assert [e for i in range(len(stream)) for e in bytewise.feed(stream[i : i + 1])] == events


def test_the_parser_refuses_a_response_that_is_not_a_stream() -> None:
    with pytest.raises(ValueError, match="not a stream"):
        SseParser().feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ValueError, match="not text/event-stream"):
        SseParser().feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")


def test_an_agui_event_is_read_as_the_native_one_it_encodes() -> None:
    start = {"type": "message_start", "message_id": "m", "role": "assistant", "kind": "text"}
    delta = {"type": "message_delta", "message_id": "m", "delta": 'caf\u00e9 "x"'}
    (payload,) = agui.encode("ch", delta, 7, 5, start, {"run_id": "r"})
    assert agui_view(orjson.loads(payload)) == {
        "seq": 7, "from_seq": 5, "type": "message_delta", "message_id": "m", "delta": delta["delta"]
    }  # fmt: skip


def test_the_watchers_catch_a_delta_that_differs_over_each_transport_and_encoding() -> None:
    events = agent_stream("ch", 60, seed=1)
    changed = next(i for i, e in enumerate(events) if e["type"] == "message_delta")
    events[changed] = {**events[changed], "delta": events[changed]["delta"] + "!"}
    groups = [Group("ws", "agentcast", 1), Group("sse", "agentcast", 1), Group("ws", "agui", 1),
              Group("sse", "agui", 1)]  # fmt: skip
    hub = Broadcaster(port=0, ping_interval=0, on_connect=lambda c: hub.subscribe(c, "ch"))
    with hub:
        watchers = StreamWatchers(hub.port, None)
        try:
            watchers.connect("ch", groups, Stream(60, 1, 0.0), timed=False)
            subscribed = threading.Event()  # the WebSocket ones are subscribed on connect
            while hub.stats()["subscriptions"] < len(groups):
                subscribed.wait(0.01)
            for event in events:
                hub.publish_event(event, "ch")
            done, _ = watchers.wait(deadline=time.monotonic() + 30)
            outcomes = watchers.report(b"")
        finally:
            watchers.stop()
    assert done
    for group in groups:
        outcome = outcomes[group.name]
        assert (outcome.text_faults, outcome.seq_faults, outcome.incomplete) == (1, 0, 0)
        assert outcome.deliveries == len(events) and outcome.faults == 1


def test_the_script_runs_end_to_end_and_checks_every_stream(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    tiny = ["--watchers", "4", "--rate", "200", "--duration", "0.25", "--burst", "40"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *tiny, "--rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sse/ws steady CPU per delivery" in result.stdout
    (segments,) = orjson.loads(out.read_bytes())["rounds"]
    assert {(s["phase"], s["segment"]) for s in segments} == {
        (phase, segment)
        for phase in ("ws", "sse", "ws+sse", "ws+agui")
        for segment in ("steady", "burst")
    }
    for s in segments:
        assert s["faults"] == 0 and s["watchers"] == 4
        assert sum(g["frames"] for g in s["groups"].values()) == 4 * s["events"]
