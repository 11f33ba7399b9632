"""What the tests check of an agent event stream as a client receives it."""

from __future__ import annotations

from typing import Any


def check_stream(events: list[dict[str, Any]]) -> None:
    """What every client of the field demands of a stream from its first frame: a run
    opened before anything in it, a message or tool call started before its deltas and
    ended once, nothing after run_end, seq rising."""
    open_run = False
    started: set[str] = set()
    ended: set[str] = set()
    last_seq = 0
    for event in events:
        kind = event["type"]
        assert event["seq"] > last_seq, f"seq went back at {event}"
        last_seq = event["seq"]
        stream = event.get("message_id") or event.get("tool_call_id")
        if kind == "run_start":
            assert not open_run
            open_run = True
            continue
        assert open_run, f"{kind} outside a run"
        if kind in ("message_start", "tool_call_start"):
            assert stream not in started
            started.add(stream)
        elif kind in ("message_delta", "tool_call_delta"):
            assert stream in started and stream not in ended, f"{kind} of {stream} not open"
        elif kind in ("message_end", "tool_call_end"):
            assert stream in started and stream not in ended
            ended.add(stream)
        elif kind in ("run_end", "run_error"):
            assert started == ended, "run ended with something open"
            open_run = False


def text(events: list[dict[str, Any]], message_id: str) -> str:
    return "".join(
        e["delta"] for e in events if e["type"] == "message_delta" and e["message_id"] == message_id
    )
