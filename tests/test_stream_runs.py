"""Open runs per channel: whole messages at their end, exact snapshots for a watcher that
joins mid-run, bounds, and a producer's mistakes tolerated and counted."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from agentcast.streams.events import BadEvent, check_event
from agentcast.streams.patch import apply_patch
from agentcast.streams.runs import PIECE_BYTES, RECORD_BYTES, OpenRuns

Event = dict[str, Any]

RUN: Event = {"type": "run_start", "run_id": "r1"}
RUN_END: Event = {"type": "run_end", "run_id": "r1", "outcome": "success"}


def msg_start(mid: str = "m1", role: str = "assistant", kind: str = "text") -> Event:
    return {"type": "message_start", "message_id": mid, "role": role, "kind": kind}


def delta(piece: str, mid: str = "m1") -> Event:
    return {"type": "message_delta", "message_id": mid, "delta": piece}


def msg_end(mid: str = "m1") -> Event:
    return {"type": "message_end", "message_id": mid}


def call_start(cid: str = "t1", name: str = "search") -> Event:
    return {"type": "tool_call_start", "tool_call_id": cid, "name": name}


def args(piece: str, cid: str = "t1") -> Event:
    return {"type": "tool_call_delta", "tool_call_id": cid, "delta": piece}


def call_end(cid: str = "t1") -> Event:
    return {"type": "tool_call_end", "tool_call_id": cid}


def result(content: str, cid: str = "t1") -> Event:
    return {"type": "tool_result", "tool_call_id": cid, "content": content}


def feed(runs: OpenRuns, events: list[Event], channel: str = "a", seq: int = 1) -> list[Any]:
    """Observe ``events`` numbered from ``seq``; what each returned."""
    return [runs.observe(channel, check_event(e), seq + i) for i, e in enumerate(events)]


def at(event: Event, seq: int, **extra: Any) -> Event:
    return {**event, "seq": seq, **extra}


# ---- whole messages at their end ---------------------------------------------------


def test_message_end_returns_the_whole_message_and_a_delta_its_start() -> None:
    runs = OpenRuns()
    start = msg_start(kind="reasoning")
    returned = feed(
        runs,
        [
            RUN,
            start,
            delta("Hel"),
            delta(""),
            delta("lo"),
            msg_end(),
            RUN_END,
        ],
    )
    done = {"message_id": "m1", "role": "assistant", "kind": "reasoning", "content": "Hello"}
    assert returned == [None, None, start, start, start, done, None]


def test_tool_call_end_returns_name_and_arguments() -> None:
    runs = OpenRuns()
    returned = feed(runs, [RUN, call_start(), args('{"q":'), args('"x"}'), call_end()])
    assert returned[-1] == {"tool_call_id": "t1", "name": "search", "arguments": '{"q":"x"}'}


def test_a_message_outside_a_run_is_kept_until_its_end_then_dropped() -> None:
    runs = OpenRuns()
    feed(runs, [msg_start(), delta("Hi"), delta("!")])
    assert runs.snapshot("a") == [at(msg_start(), 1), at(delta("Hi!"), 3, from_seq=2)]
    assert runs.observe("a", msg_end(), 4) == {
        "message_id": "m1",
        "role": "assistant",
        "kind": "text",
        "content": "Hi!",
    }
    assert runs.snapshot("a") == []
    assert runs.bytes_of("a") == 0
    assert runs.total_bytes == 0


def test_a_whole_message_returns_nothing_and_is_kept_only_in_a_run() -> None:
    runs = OpenRuns()
    whole = {
        "type": "message",
        "message_id": "m0",
        "role": "assistant",
        "kind": "text",
        "content": "done",
    }
    assert feed(runs, [whole]) == [None]
    assert runs.snapshot("a") == []
    feed(runs, [RUN, whole], seq=2)
    assert runs.snapshot("a") == [at(RUN, 2), at(whole, 3)]


# ---- snapshots -----------------------------------------------------------------------


def test_snapshot_of_an_open_run_from_nothing_is_exact() -> None:
    runs = OpenRuns()
    step = {"type": "step_start", "run_id": "r1", "step": "s1"}
    feed(runs, [RUN, step, msg_start(), delta("Hel"), delta("lo"), delta(" world")])
    assert runs.snapshot("a") == [
        at(RUN, 1),
        at(step, 2),
        at(msg_start(), 3),
        {
            "type": "message_delta",
            "message_id": "m1",
            "delta": "Hello world",
            "seq": 6,
            "from_seq": 4,
        },
    ]


def test_snapshot_since_the_middle_of_a_message_merges_only_what_follows() -> None:
    runs = OpenRuns()
    feed(runs, [RUN, msg_start(), delta("Hel"), delta("lo"), delta(" wor"), delta("ld")])
    assert runs.snapshot("a", since=3) == [at(delta("lo world"), 6, from_seq=4)]
    assert runs.snapshot("a", since=4) == [at(delta(" world"), 6, from_seq=5)]
    assert runs.snapshot("a", since=5) == [at(delta("ld"), 6)]  # one piece: a plain delta
    assert runs.snapshot("a", since=6) == []
    assert runs.snapshot("a", since=1) == [
        at(msg_start(), 2),
        at(delta("Hello world"), 6, from_seq=3),
    ]


def test_snapshot_is_in_seq_order_with_a_message_and_a_tool_call_interleaved() -> None:
    runs = OpenRuns()
    feed(
        runs,
        [
            RUN,
            msg_start(),
            delta("a"),
            call_start(),
            args("{"),
            delta("b"),
            args("}"),
            call_end(),
            delta("c"),
        ],
    )
    snapshot = runs.snapshot("a")
    assert snapshot == [
        at(RUN, 1),
        at(msg_start(), 2),
        at(call_start(), 4),
        at(args("{}"), 7, from_seq=5),
        at(call_end(), 8),
        at(delta("abc"), 9, from_seq=3),
    ]
    assert runs.snapshot("a", since=5) == [
        at(args("}"), 7),
        at(call_end(), 8),
        at(delta("bc"), 9, from_seq=6),
    ]


def test_a_completed_tool_call_and_its_result_stay_in_the_runs_snapshot() -> None:
    runs = OpenRuns()
    feed(runs, [RUN, call_start(), args("{}"), call_end(), result("42")])
    assert runs.snapshot("a") == [
        at(RUN, 1),
        at(call_start(), 2),
        at(args("{}"), 3),
        at(call_end(), 4),
        at(result("42"), 5),
    ]
    assert runs.snapshot("a", since=4) == [at(result("42"), 5)]


def test_a_result_without_its_call_is_kept_on_its_own() -> None:
    runs = OpenRuns()
    feed(runs, [RUN, result("42", cid="t9")])
    assert runs.snapshot("a") == [at(RUN, 1), at(result("42", cid="t9"), 2)]


def test_a_closed_step_is_replayed_only_as_far_as_the_watcher_lacks_it() -> None:
    runs = OpenRuns()
    start = {"type": "step_start", "run_id": "r1", "step": "s1"}
    end = {"type": "step_end", "run_id": "r1", "step": "s1"}
    feed(runs, [RUN, start, end, start], seq=1)
    assert runs.snapshot("a") == [at(RUN, 1), at(start, 2), at(end, 3), at(start, 4)]
    assert runs.snapshot("a", since=2) == [at(end, 3), at(start, 4)]


def test_an_id_started_again_after_its_end_keeps_both_messages() -> None:
    runs = OpenRuns()
    feed(runs, [RUN, msg_start(), delta("one"), msg_end(), msg_start(), delta("two")])
    assert runs.snapshot("a") == [
        at(RUN, 1),
        at(msg_start(), 2),
        at(delta("one"), 3),
        at(msg_end(), 4),
        at(msg_start(), 5),
        at(delta("two"), 6),
    ]
    assert runs.observe("a", msg_end(), 7)["content"] == "two"  # type: ignore[index]


def test_run_end_and_run_error_drop_the_run() -> None:
    runs = OpenRuns()
    for end in (RUN_END, {"type": "run_error", "run_id": "r1", "message": "boom"}):
        feed(runs, [RUN, msg_start(), delta("x"), end])
        assert runs.snapshot("a") == []
        assert runs.total_bytes == 0
        assert runs.observe("a", delta("y"), 5) is None  # its messages went with it
    assert runs.unknown_ids == 2


def test_a_run_start_while_a_run_is_open_replaces_it() -> None:
    runs = OpenRuns()
    second = {"type": "run_start", "run_id": "r2", "thread_id": "t"}
    feed(runs, [RUN, msg_start(), delta("x"), second])
    assert runs.snapshot("a") == [at(second, 4)]
    assert runs.bytes_of("a") == RECORD_BYTES + len("r2")


def test_an_unknown_channel_has_an_empty_snapshot() -> None:
    assert OpenRuns().snapshot("nobody", since=3) == []


# ---- the state document ----------------------------------------------------------------


def snapshot_event(doc: Any) -> Event:
    return {"type": "state_snapshot", "snapshot": doc}


def patch_event(*ops: Event) -> Event:
    return {"type": "state_patch", "patch": list(ops)}


def test_the_state_is_the_last_snapshot_with_later_patches_applied() -> None:
    runs = OpenRuns()
    doc = {"todo": ["a"]}
    feed(
        runs,
        [
            RUN,
            snapshot_event(doc),
            patch_event({"op": "add", "path": "/todo/-", "value": "b"}),
            msg_start(),
        ],
    )
    want_state = {"type": "state_snapshot", "snapshot": {"todo": ["a", "b"]}, "seq": 3}
    assert runs.snapshot("a") == [at(RUN, 1), want_state, at(msg_start(), 4)]
    assert runs.snapshot("a", since=2) == [want_state, at(msg_start(), 4)]
    assert runs.snapshot("a", since=3) == [at(msg_start(), 4)]
    assert doc == {"todo": ["a"]}  # the producer's event is never changed


def test_a_failed_patch_leaves_the_state_as_it_was_and_is_counted() -> None:
    runs = OpenRuns()
    bad = patch_event(
        {"op": "replace", "path": "/n", "value": 2}, {"op": "remove", "path": "/missing"}
    )
    huge = patch_event({"op": "replace", "path": "/n", "value": 2**70})  # not JSON orjson writes
    with pytest.raises(BadEvent, match="not JSON-serializable"):
        check_event(huge)  # a producer is told; the runs must survive it all the same
    assert feed(runs, [RUN, snapshot_event({"n": 1}), bad]) == [None] * 3
    assert runs.observe("a", huge, 4) is None
    assert runs.failed_patches == 2
    assert runs.snapshot("a", since=1) == [
        {"type": "state_snapshot", "snapshot": {"n": 1}, "seq": 2}
    ]


def test_patches_before_any_snapshot_apply_to_an_empty_object() -> None:
    runs = OpenRuns()
    feed(runs, [RUN, patch_event({"op": "add", "path": "/x", "value": 1})])
    assert runs.snapshot("a", since=1) == [
        {"type": "state_snapshot", "snapshot": {"x": 1}, "seq": 2}
    ]


def test_state_outside_a_run_is_not_kept() -> None:
    runs = OpenRuns()
    feed(runs, [snapshot_event({"x": 1}), msg_start()])
    assert runs.snapshot("a") == [at(msg_start(), 2)]


# ---- a producer's mistakes ----------------------------------------------------------------


def test_ids_never_started_are_tolerated_and_counted() -> None:
    runs = OpenRuns()
    returned = feed(
        runs,
        [
            delta("x", mid="m9"),
            msg_end("m9"),
            args("{", cid="t9"),
            call_end("t9"),
            RUN,
            delta("x", mid="m9"),
            msg_end("m9"),
            call_end("t9"),
            {"type": "step_end", "run_id": "r1", "step": "s9"},
        ],
    )
    assert returned == [None] * 9
    assert runs.unknown_ids == 8
    assert runs.snapshot("a") == [at(RUN, 5)]


def test_a_second_start_or_end_of_one_id_is_ignored() -> None:
    runs = OpenRuns()
    feed(runs, [RUN, msg_start(), delta("a"), msg_start(role="user"), msg_end()])
    assert runs.observe("a", msg_end(), 6) is None
    assert runs.observe("a", delta("late"), 7) is None  # after its end: not its text
    assert runs.unknown_ids == 3
    assert runs.snapshot("a") == [
        at(RUN, 1),
        at(msg_start(), 2),
        at(delta("a"), 3),
        at(msg_end(), 5),
    ]


def test_custom_events_unmatched_step_ends_and_unknown_kinds_change_nothing() -> None:
    runs = OpenRuns()
    custom = {"type": "custom", "name": "ping", "value": 1}
    feed(runs, [RUN, custom, {"type": "step_end", "run_id": "r1", "step": "x"}])
    assert runs.snapshot("a") == [at(RUN, 1)]
    assert runs.observe("a", {"type": "not_a_kind"}, 4) is None


# ---- bounds --------------------------------------------------------------------------------


def test_bytes_count_records_ids_and_pieces() -> None:
    runs = OpenRuns()
    feed(runs, [RUN, msg_start(), delta("Hello")])
    expected = RECORD_BYTES + len("r1") + RECORD_BYTES + len("m1") + PIECE_BYTES + len("Hello")
    assert runs.bytes_of("a") == expected
    assert runs.total_bytes == expected


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OpenRuns(max_run_bytes=0)
    with pytest.raises(ValueError, match="at least 1"):
        OpenRuns(max_total_bytes=0)


def test_over_its_bound_a_run_forgets_completed_items_first() -> None:
    piece = "x" * 1000
    first = [msg_start(), delta(piece), msg_end()]  # seqs 2..4
    second = [msg_start("m2"), delta(piece, "m2")]  # seqs 5..6
    base = RECORD_BYTES + 2 + 2 * (RECORD_BYTES + 2 + PIECE_BYTES + 1000)
    runs = OpenRuns(max_run_bytes=base - 1)
    feed(runs, [RUN, *first, *second])
    assert runs.forgotten_items == 1
    assert runs.lost_runs == 0
    # a watcher from nothing gets a valid stream without the completed message
    assert runs.snapshot("a") == [at(RUN, 1), at(msg_start("m2"), 5), at(delta(piece, "m2"), 6)]
    # one that saw its start cannot be given its end: history trimmed
    assert runs.snapshot("a", since=2) is None
    assert runs.snapshot("a", since=4) == [at(msg_start("m2"), 5), at(delta(piece, "m2"), 6)]
    assert runs.bytes_of("a") == base - (len("m1") + PIECE_BYTES + 1000)  # a stub stays


def test_a_run_that_still_does_not_fit_is_lost_until_it_ends() -> None:
    runs = OpenRuns(max_run_bytes=3 * RECORD_BYTES)
    feed(runs, [RUN, msg_start(), delta("x" * RECORD_BYTES)])
    assert runs.lost_runs == 1
    assert runs.snapshot("a") is None
    assert runs.bytes_of("a") == 0
    assert runs.total_bytes == 0
    # the run goes on untracked, never failing
    assert feed(runs, [delta("y"), msg_end(), msg_start("m2"), msg_end("m2")], seq=4) == [None] * 4
    assert runs.snapshot("a") is None
    feed(runs, [RUN_END, RUN, msg_start()], seq=8)
    assert runs.snapshot("a") == [at(RUN, 9), at(msg_start(), 10)]


def test_a_lost_message_outside_a_run_is_lost_until_its_end() -> None:
    runs = OpenRuns(max_run_bytes=2 * RECORD_BYTES)
    feed(runs, [msg_start(), msg_start("m2"), delta("x" * RECORD_BYTES, "m2")])
    assert runs.lost_runs == 1
    assert runs.snapshot("a") is None
    feed(runs, [msg_start("m3"), msg_end("m2")], seq=4)
    assert runs.snapshot("a") is None  # m1 is still open
    assert runs.observe("a", msg_end(), 6) is None
    assert runs.snapshot("a") == [at(msg_start("m3"), 4)]
    assert runs.observe("a", msg_end("m3"), 7) is not None
    assert runs.snapshot("a") == []
    assert runs.total_bytes == 0


def test_over_the_total_the_least_recently_used_channels_are_dropped() -> None:
    one_run = RECORD_BYTES + 2 + RECORD_BYTES + 2  # run_start + message_start
    runs = OpenRuns(max_total_bytes=3 * one_run + PIECE_BYTES)
    for channel in ("a", "b", "c"):
        feed(runs, [RUN, msg_start()], channel=channel)
    feed(runs, [delta("")], channel="a", seq=3)  # "b" is now the least recently used
    feed(runs, [RUN, msg_start()], channel="d")
    assert runs.dropped_channels == 1
    assert runs.snapshot("b") is None  # it had an open run
    assert runs.observe("b", delta("x"), 3) is None
    for channel in ("a", "c", "d"):
        assert runs.snapshot(channel) is not None
    assert runs.total_bytes == 3 * one_run + PIECE_BYTES
    assert runs.total_bytes <= runs.max_total_bytes
    feed(runs, [RUN_END], channel="b", seq=4)
    assert runs.snapshot("b") == []


def test_forget_drops_a_channels_state() -> None:
    runs = OpenRuns(max_run_bytes=2 * RECORD_BYTES)
    feed(runs, [RUN, msg_start()], channel="a")
    feed(runs, [RUN, msg_start(), delta("x" * RECORD_BYTES)], channel="b")  # lost
    runs.forget("a")
    runs.forget("b")
    runs.forget("never")
    assert runs.total_bytes == 0
    assert runs.snapshot("a") == []
    assert runs.snapshot("b") == []


# ---- a watcher joining anywhere gets a valid stream and the same result -------------------


class Watcher:
    """A strict client: refuses what AG-UI's verifier refuses, assembles text and state."""

    def __init__(self) -> None:
        self.run_open = False
        self.open: set[tuple[str, str]] = set()
        self.text: dict[tuple[str, str], str] = {}
        self.state: Any = {}
        self.last_seq = 0

    def take(self, event: Event) -> None:
        assert event["seq"] > self.last_seq, "seq went backwards"
        self.last_seq = event["seq"]
        kind = event["type"]
        if kind == "run_start":
            assert not self.run_open
            self.run_open = True
        elif kind in ("message_start", "tool_call_start", "step_start"):
            key = (
                kind.split("_")[0],
                event.get("message_id") or event.get("tool_call_id") or event["step"],
            )
            assert key not in self.open, f"{key} started twice"
            self.open.add(key)
            self.text.setdefault(key, "")
        elif kind in ("message_delta", "tool_call_delta"):
            key = (kind.split("_")[0], event.get("message_id") or event["tool_call_id"])
            assert key in self.open, f"delta of {key} without its start"
            self.text[key] += event["delta"]
        elif kind in ("message_end", "tool_call_end", "step_end"):
            key = (
                kind.split("_")[0],
                event.get("message_id") or event.get("tool_call_id") or event["step"],
            )
            assert key in self.open, f"end of {key} without its start"
            self.open.remove(key)
        elif kind == "state_snapshot":
            self.state = copy.deepcopy(event["snapshot"])
        elif kind == "state_patch":
            self.state = apply_patch(self.state, event["patch"])
        elif kind in ("message", "tool_result"):
            key = (kind, event.get("message_id") or event["tool_call_id"])
            self.text[key] = event["content"]


def random_run(rng: random.Random) -> list[Event]:
    """One run: messages, tool calls and steps interleaved, state patched, all closed."""
    events: list[Event] = [RUN, snapshot_event({"n": 0, "log": []})]
    open_items: list[tuple[str, str]] = []
    for number in range(rng.randint(1, 6)):
        events.append(msg_start(f"m{number}") if number % 2 else call_start(f"t{number}"))
        open_items.append(("m" if number % 2 else "t", f"{'m' if number % 2 else 't'}{number}"))
        for _ in range(rng.randint(0, 5)):
            kind, item = rng.choice(open_items)
            piece = rng.choice(["a", "bc", "", "é", " d"])
            events.append(delta(piece, item) if kind == "m" else args(piece, item))
            if rng.random() < 0.2:
                events.append(patch_event({"op": "add", "path": "/log/-", "value": piece}))
        if rng.random() < 0.4:
            kind, item = open_items.pop(0)
            events.append(msg_end(item) if kind == "m" else call_end(item))
            if kind == "t":
                events.append(result("r" + item, item))
    events.append({"type": "step_start", "run_id": "r1", "step": "s"})
    for kind, item in open_items:
        events.append(msg_end(item) if kind == "m" else call_end(item))
    return events


@pytest.mark.parametrize("seed", range(40))
def test_snapshot_then_tail_from_any_point_equals_the_whole_stream(seed: int) -> None:
    rng = random.Random(seed)
    events = [check_event(e) for e in random_run(rng)]
    numbered = [at(e, seq) for seq, e in enumerate(events, start=1)]
    everything = Watcher()
    for event in numbered:
        everything.take(event)
    for joined in range(1, len(events) + 1):  # the snapshot is taken after event ``joined``
        runs = OpenRuns()
        feed(runs, events[:joined])
        for since in sorted({0, rng.randint(0, joined), joined - 1, joined}):
            watcher = Watcher()
            for event in numbered[:since]:
                watcher.take(event)
            snapshot = runs.snapshot("a", since)
            assert snapshot is not None
            assert all(e["seq"] > since for e in snapshot)
            for event in [*snapshot, *numbered[joined:]]:
                watcher.take(event)
            assert watcher.text == everything.text, (joined, since)
            assert watcher.state == everything.state
            assert watcher.open == everything.open == {("step", "s")}
