"""``StreamPrinter``: what ``agentcast client`` prints of a native event stream, piece by
piece, with a clock the test moves (no I/O, no sleep)."""

from __future__ import annotations

from typing import Any

import orjson

from agentcast.client.printer import REPLAY_WINDOW, Output, StreamPrinter
from agentcast.notices import channel_restarted, resume_gap

Event = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def numbered(*events: Event, first: int = 1) -> list[Event]:
    return [{**e, "channel": "demo", "seq": seq} for seq, e in enumerate(events, first)]


def message(message_id: str, kind: str, *pieces: str) -> list[Event]:
    return [
        {"type": "message_start", "message_id": message_id, "role": "assistant", "kind": kind},
        *({"type": "message_delta", "message_id": message_id, "delta": p} for p in pieces),
        {"type": "message_end", "message_id": message_id},
    ]


def tool_call(call_id: str, name: str, *pieces: str) -> list[Event]:
    return [
        {"type": "tool_call_start", "tool_call_id": call_id, "name": name},
        *({"type": "tool_call_delta", "tool_call_id": call_id, "delta": p} for p in pieces),
        {"type": "tool_call_end", "tool_call_id": call_id},
    ]


def printed(printer: StreamPrinter, events: list[Event]) -> list[str]:
    """What each event prints, in order."""
    return [printer.receive(event).out for event in events]


def test_each_piece_is_printed_as_it_comes_and_a_run_ends_with_its_footer() -> None:
    clock = Clock()
    printer = StreamPrinter("demo", clock)
    printer.line_sent()
    clock.now += 0.5
    events = numbered(
        {"type": "run_start", "run_id": "r"},
        *message("m1", "reasoning", "I will ", "echo it."),
        *tool_call("c1", "send_message", '{"message"', ':"hi"}'),
        {"type": "tool_result", "tool_call_id": "c1", "content": "OK"},
        *message("m2", "text", "You ", "said: ", "hi"),
        {"type": "run_end", "run_id": "r", "outcome": "success"},
    )
    outputs = printed(printer, events[:-1])
    clock.now += 1.0
    outputs.append(printer.receive(events[-1]).out)
    assert outputs == [
        "",
        "[reasoning] ",
        "I will ",
        "echo it.",
        "\n",
        "[tool send_message] ",
        '{"message"',
        ':"hi"}',
        "\n",
        "[result send_message] OK\n",
        "[assistant] ",
        "You ",
        "said: ",
        "hi",
        "\n",
        "-- run success · took 1.50 s --\n",  # from the line sent
    ]


def test_interleaved_streams_take_turns_on_lines_marked_as_continued() -> None:
    printer = StreamPrinter("demo")
    events = numbered(
        *message("m1", "text", "Hel")[:2],
        *tool_call("c1", "search", '{"q":')[:2],
        {"type": "message_delta", "message_id": "m1", "delta": "lo"},
        {"type": "tool_call_delta", "tool_call_id": "c1", "delta": '"x"}'},
        {"type": "tool_call_end", "tool_call_id": "c1"},
        {"type": "message_end", "message_id": "m1"},
    )
    text = "".join(printed(printer, events))
    assert text == (
        "[assistant] Hel\n"
        '[tool search] {"q":\n'
        "[assistant …] lo\n"
        '[tool search …] "x"}\n'  # the message's end prints nothing: its line was taken
    )


def test_a_status_line_ends_the_open_line_and_the_stream_goes_on_below_it() -> None:
    printer = StreamPrinter("demo")
    start, first, second, end = numbered(*message("m1", "text", "Hello, ", "world"))
    assert printer.receive(start).out + printer.receive(first).out == "[assistant] Hello, "
    assert printer.break_line() == "\n"  # before "reconnecting..." on stderr
    assert printer.break_line() == ""
    assert printer.receive(second).out == "[assistant …] world"
    assert printer.receive(end).out == "\n"


def test_a_delta_whose_start_was_not_seen_and_a_merged_one_print_like_any() -> None:
    printer = StreamPrinter("demo")
    merged = {"type": "message_delta", "message_id": "m9", "delta": "lo, wor", "from_seq": 3}
    events = numbered(merged, {"type": "message_delta", "message_id": "m9", "delta": "ld"}, first=4)
    assert "".join(printed(printer, events)) == "[message …] lo, world"


def test_the_footer_says_usage_errors_and_what_it_cannot_time() -> None:
    clock = Clock()
    printer = StreamPrinter("demo", clock)
    printer.connected()
    clock.now += REPLAY_WINDOW / 2  # a run_start this soon may be history replayed
    start, end = numbered(
        {"type": "run_start", "run_id": "r1"},
        {"type": "run_end", "run_id": "r1", "outcome": "success", "usage": {"output_tokens": 7}},
    )
    assert printed(printer, [start, end]) == [
        "",
        "-- run success · usage: output_tokens 7 · not timed: it may have begun before this"
        " client joined --\n",
    ]
    clock.now += REPLAY_WINDOW  # live now: timed from its run_start
    start, failed = numbered(
        {"type": "run_start", "run_id": "r2"},
        {"type": "run_error", "run_id": "r2", "message": "RuntimeError: the model went away"},
        first=3,
    )
    printer.receive(start)
    clock.now += 0.25
    assert printer.receive(failed).out == (
        "-- run error: RuntimeError: the model went away · took 0.25 s --\n"
    )


def test_state_steps_and_custom_events_are_one_line_each() -> None:
    printer = StreamPrinter("demo")
    events = numbered(
        {"type": "step_start", "run_id": "r", "step": "plan"},
        {"type": "step_end", "run_id": "r", "step": "plan"},
        {"type": "state_snapshot", "snapshot": {"city": "Paris"}},
        {"type": "state_patch", "patch": [{"op": "remove", "path": "/city"}]},
        {"type": "custom", "name": "progress", "value": 0.5},
        {"type": "message", "message_id": "m", "role": "tool", "kind": "text", "content": "42"},
    )
    assert "".join(printed(printer, events)) == (
        "[step] plan\n"
        '[state snapshot] {"city":"Paris"}\n'
        '[state patch] [{"op":"remove","path":"/city"}]\n'
        "[custom progress] 0.5\n"
        "[tool] 42\n"
    )


def test_terminal_escapes_split_across_pieces_are_printed_escaped() -> None:
    printer = StreamPrinter("demo")
    events = numbered(*message("m1", "text", "copy \x1b", "]52;c;aGk=\x07 \x9b2J"))
    text = "".join(printed(printer, events))
    assert text == "[assistant] copy \\x1b]52;c;aGk=\\x07 \\x9b2J\n"


def test_notices_go_to_stderr_and_answers_end_the_line_in_flight() -> None:
    printer = StreamPrinter("demo")
    printer.receive(numbered({"type": "run_start", "run_id": "r"}, first=27)[0])
    assert printer.receive({"type": "agent_response_start"}) == Output(started=True)
    assert printer.receive({"type": "agent_response_end"}) == Output(answers=True)
    restarted = printer.receive(_json(channel_restarted("demo", 27)))
    assert restarted.out == "" and not restarted.answers
    assert restarted.err == (
        "demo's numbering restarted on the server (this client had seen up to seq 27):"
        " counting again from 1"
    )
    trimmed = printer.receive(_json(resume_gap("demo", 2, 10, 20)))
    assert trimmed.err is not None and "no longer kept" in trimmed.err
    refused = printer.receive({"type": "server_error", "code": "forbidden", "message": "no"})
    assert refused == Output("[server_error] no\n", answers=True)
    failed = printer.receive({"type": "agent_response_error", "message": "boom"})
    assert failed == Output("[agent_response_error] boom\n", answers=True)


def _json(frame: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(frame)
    return parsed
