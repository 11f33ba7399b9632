"""Agent events in the fan-out core: encoded once per encoding, kept, snapshotted for a
joiner, and merged losslessly for a client whose transport lags."""

from __future__ import annotations

from typing import Any

import orjson
import uvloop

from agentcast._backlog import MERGE_LIMIT
from agentcast._ext import CallbackSink, FanoutCore, MemorySink
from agentcast.streams.codec import EventCodec
from agentcast.streams.encodings import ENCODINGS
from clients import drain, frames_of

MEMGPT, NATIVE = ENCODINGS.index("memgpt"), ENCODINGS.index("agentcast")
LAG = 4096  # lag_threshold of these cores


def core_with(loop: uvloop.Loop, **options: Any) -> FanoutCore:
    return FanoutCore(loop, wake=lambda _: None, codec=EventCodec(), lag_threshold=LAG, **options)


def events_of(sink: MemorySink) -> list[dict[str, Any]]:
    return [orjson.loads(frame) for frame in frames_of(sink)]


def watcher(core: FanoutCore, encoding: int = NATIVE, channel: str = "a") -> MemorySink:
    sink = MemorySink()
    core.subscribe(core.add_client(sink, encoding), channel)
    drain(core)
    return sink


def start_message(core: FanoutCore, channel: str = "a", message_id: str = "m") -> None:
    core.publish_event({"type": "run_start", "run_id": "r"}, channel)
    core.publish_event(
        {"type": "message_start", "message_id": message_id, "role": "assistant", "kind": "text"},
        channel,
    )


def delta(core: FanoutCore, text: str, channel: str = "a", message_id: str = "m") -> None:
    core.publish_event({"type": "message_delta", "message_id": message_id, "delta": text}, channel)


def end_message(core: FanoutCore, channel: str = "a", message_id: str = "m") -> None:
    core.publish_event({"type": "message_end", "message_id": message_id}, channel)
    core.publish_event({"type": "run_end", "run_id": "r", "outcome": "success"}, channel)


def text_of(events: list[dict[str, Any]], message_id: str = "m") -> str:
    return "".join(
        e["delta"] for e in events if e["type"] == "message_delta" and e["message_id"] == message_id
    )


def test_each_encoding_gets_its_own_frames_and_memgpt_the_whole_message(loop: uvloop.Loop) -> None:
    core = core_with(loop)
    native, memgpt = watcher(core), watcher(core, MEMGPT)
    start_message(core)
    for piece in ("Hel", "lo", " world"):
        delta(core, piece)
    end_message(core)
    drain(core)
    got = events_of(native)
    assert [e["type"] for e in got] == ["run_start", "message_start"] + ["message_delta"] * 3 + [
        "message_end",
        "run_end",
    ]
    assert [e["seq"] for e in got] == list(range(1, 8))
    assert all(e["channel"] == "a" for e in got)
    assert text_of(got) == "Hello world"
    assert events_of(memgpt) == [
        {
            "type": "agent_response",
            "message_type": "assistant_message",
            "message": "Hello world",
            "agent_id": "a",
            "seq": 6,
        }
    ]


def test_a_joiner_mid_run_gets_the_open_run_then_the_tail(loop: uvloop.Loop) -> None:
    core = core_with(loop)
    start_message(core)
    for piece in ("a", "b", "c"):
        delta(core, piece)
    drain(core)
    joiner = watcher(core)
    delta(core, "d")
    end_message(core)
    drain(core)
    got = events_of(joiner)
    assert [(e["type"], e["seq"], e.get("from_seq")) for e in got] == [
        ("run_start", 1, None),
        ("message_start", 2, None),
        ("message_delta", 5, 3),
        ("message_delta", 6, None),
        ("message_end", 7, None),
        ("run_end", 8, None),
    ]
    assert text_of(got) == "abcd"
    assert core.stats()["snapshots"] == 1


def test_a_resume_older_than_history_gets_the_open_run_from_its_seq(loop: uvloop.Loop) -> None:
    core = core_with(loop, history_size=2)
    start_message(core)
    for piece in ("a", "b", "c", "d"):
        delta(core, piece)
    drain(core)
    sink = MemorySink()
    client = core.add_client(sink, NATIVE)
    core.subscribe(client, "a", since=3)  # has run_start, message_start, "a"; kept: 5, 6
    drain(core)
    got = events_of(sink)
    assert got[0]["code"] == "history_trimmed"
    assert [(e["type"], e["seq"], e.get("from_seq"), e.get("delta")) for e in got[1:]] == [
        ("message_delta", 6, 4, "bcd"),
    ]


def lagging(core: FanoutCore, sink: MemorySink) -> None:
    """Make ``sink``'s transport hold more than the lag threshold, and the core notice."""
    sink.backlog = 2 * LAG
    core.publish_event({"type": "custom", "name": "tick"}, "a")
    drain(core)
    assert core.stats()["lagging_clients"] == 1


def test_a_lagging_watcher_gets_merged_deltas_with_the_same_text(loop: uvloop.Loop) -> None:
    core = core_with(loop)
    fast, slow = watcher(core), watcher(core)
    start_message(core)
    drain(core)
    lagging(core, slow)
    pieces = [f"w{i} " for i in range(100)]
    for piece in pieces:
        delta(core, piece)
    end_message(core)
    drain(core)
    slow.backlog = 0  # its transport drained
    core.serve_laggards()
    fast_events, slow_events = events_of(fast), events_of(slow)
    assert text_of(slow_events) == text_of(fast_events) == "".join(pieces)
    merged = [e for e in slow_events if e.get("from_seq")]
    assert len(merged) == 1 and merged[0]["seq"] - merged[0]["from_seq"] == 99
    assert [e["type"] for e in slow_events[-2:]] == ["message_end", "run_end"]
    seqs = [e["seq"] for e in slow_events]
    assert seqs == sorted(seqs) and seqs[-1] == fast_events[-1]["seq"]
    stats = core.stats()
    assert (stats["merged_deltas"], stats["dropped_clients"]) == (99, 0)
    assert stats["lagging_clients"] == 1  # until it has been quiet a while: see below


class Clock:
    """A stand-in loop whose time moves when the test says; it runs nothing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def call_later(self, *_: object) -> None:
        """The test calls ``serve_laggards`` itself."""


def test_a_laggard_is_served_with_its_group_again_after_a_quiet_tenth_of_a_second() -> None:
    clock = Clock()
    core = FanoutCore(clock, wake=lambda _: None, codec=EventCodec(), lag_threshold=LAG)
    slow = watcher(core)
    start_message(core)
    drain(core)
    lagging(core, slow)
    delta(core, "held ")
    drain(core)
    slow.backlog = 0  # its transport drained: the backlog goes out, it stays lagging a while
    core.serve_laggards()
    assert events_of(slow)[-1]["delta"] == "held "
    core.serve_laggards()  # quiet from now
    clock.now += 0.05
    core.serve_laggards()
    assert core.stats()["lagging_clients"] == 1
    clock.now += 0.06
    core.serve_laggards()
    assert core.stats()["lagging_clients"] == 0
    delta(core, "live")  # with its group again: written in the tick
    drain(core)
    assert events_of(slow)[-1]["delta"] == "live"


def test_boundaries_are_never_merged_away(loop: uvloop.Loop) -> None:
    core = core_with(loop)
    slow = watcher(core)
    start_message(core)
    drain(core)
    lagging(core, slow)
    delta(core, "one ")
    delta(core, "two")
    core.publish_event({"type": "message_end", "message_id": "m"}, "a")
    core.publish_event(
        {"type": "message_start", "message_id": "n", "role": "assistant", "kind": "text"}, "a"
    )
    delta(core, "three ", message_id="n")
    delta(core, "four", message_id="n")
    drain(core)
    slow.backlog = 0
    core.serve_laggards()
    got = [(e["type"], e.get("delta")) for e in events_of(slow)]
    assert got[-4:] == [
        ("message_delta", "one two"),
        ("message_end", None),
        ("message_start", None),
        ("message_delta", "three four"),
    ]


def test_control_overtakes_a_lagging_clients_backlog_and_ordered_sends_do_not(
    loop: uvloop.Loop,
) -> None:
    core = core_with(loop)
    slow = MemorySink()
    client = core.add_client(slow, NATIVE)
    core.subscribe(client, "a")
    start_message(core)
    drain(core)
    lagging(core, slow)
    delta(core, "x")
    core.send_json(client, b'{"type":"agent_response_end"}')  # ordered: after the delta
    core.send_control(client, b'{"type":"subscribed","channel":"b"}')  # control: first
    drain(core)
    before = len(frames_of(slow))
    slow.backlog = 0
    core.serve_laggards()
    got = [e["type"] for e in events_of(slow)]
    assert got[before - 1 :] == ["subscribed", "message_delta", "agent_response_end"]


class StalledTransport:
    """A transport whose reader stopped: everything written stays queued."""

    def __init__(self) -> None:
        self.queued = 0
        self.closed_with: int | None = None

    def sink(self) -> CallbackSink:
        return CallbackSink(self._write, lambda: self.queued, self._close, lambda: None)

    def _write(self, data: bytes) -> None:
        self.queued += len(data)

    def _close(self, code: int, reason: str) -> None:
        self.closed_with = code


def test_a_lagging_watcher_past_its_budget_after_merging_gets_the_policy(
    loop: uvloop.Loop,
) -> None:
    core = core_with(loop, client_budget=64 * 1024)
    transport = StalledTransport()
    core.subscribe(core.add_client(transport.sink(), NATIVE), "a")
    start_message(core)
    for i in range(1000):  # merged: far less than the budget
        delta(core, f"{i:04}")
        drain(core)  # a tick per delta, as when a model streams
    assert core.stats()["lagging_clients"] == 1 and transport.closed_with is None
    for i in range(200):  # whole messages of 1 kB: nothing merges
        core.publish_event(
            {"type": "message", "message_id": f"m{i}", "role": "assistant", "kind": "text",
             "content": "x" * 1000},
            "a",
        )  # fmt: skip
    drain(core)
    assert transport.closed_with == 1013
    assert core.stats()["dropped_clients"] == 1


def test_a_freed_channel_numbered_anew_forgets_the_run_it_had(loop: uvloop.Loop) -> None:
    core = core_with(loop, channel_ttl=1.0)
    start_message(core)  # a run left open by a producer that went away; nobody watches
    delta(core, "stale")
    drain(core)
    core.sweep_idle(loop.time())
    assert core.sweep_idle(loop.time() + 10.0) == 1 and core.channel_info("a") is None
    core.publish_event({"type": "custom", "name": "fresh"}, "a")  # seq 1 again
    drain(core)
    joiner = watcher(core)
    core.publish_event({"type": "custom", "name": "live"}, "a")
    drain(core)
    assert [(e["type"], e["seq"]) for e in events_of(joiner)] == [("custom", 2)]


def test_a_merge_stops_at_the_limit_so_every_frame_fits_a_clients_cap(loop: uvloop.Loop) -> None:
    core = core_with(loop)
    slow = watcher(core)
    start_message(core)
    drain(core)
    lagging(core, slow)
    piece = "x" * 1000
    for _ in range(3 * MERGE_LIMIT // len(piece)):
        delta(core, piece)
    drain(core)
    slow.backlog = 0
    core.serve_laggards()
    deltas = [e for e in events_of(slow) if e["type"] == "message_delta"]
    assert len(deltas) >= 3 and all(len(e["delta"]) <= MERGE_LIMIT for e in deltas)
    assert "".join(e["delta"] for e in deltas) == piece * (3 * MERGE_LIMIT // len(piece))
