"""What ``agentcast client`` prints of an agent's native event stream, with no I/O.

Text is printed as it arrives: ``receive`` returns what to write (and flush) now, which
may end mid-line. A terminal line belongs to one stream at a time (a message, or a tool
call's arguments); when a piece of another stream comes while a line is open, the line
ends there, and the first stream, when it goes on, starts a new line marked ``…``::

    [reasoning] The user said 'hi'; I will echo it back.
    [tool send_message] {"message":"You said: hi"}
    [result send_message] OK
    [assistant] You said: hi
    -- run success · took 0.31 s --

A run's footer says its outcome, its usage if it reports one, and how long it took as
this client saw it: from the line typed here that began it, or from its ``run_start``,
unless that came right after a (re)connection, when it may be history replayed (then it
says so instead). Everything another party wrote is printed with its terminal escapes
escaped, never obeyed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from agentcast import notices
from agentcast.client.conversation import describe
from agentcast.printable import for_terminal

__all__ = ["REPLAY_WINDOW", "Output", "StreamPrinter"]

REPLAY_WINDOW: Final = 0.25
"""Seconds after a (re)connection within which a ``run_start`` may be history replayed."""
STREAM_NOTICES: Final = notices.GAP_CODES | {
    notices.SKIPPED,
    notices.TOO_MANY_SUBSCRIPTIONS,
    notices.TOO_MANY_CHANNELS,
}
"""Codes of notices about the stream, not answers to a line."""
LINE_ANSWERS: Final = frozenset({"agent_response_end", "agent_response_error", "server_error"})


@dataclass(frozen=True)
class Output:
    """What to do with one frame."""

    out: str = ""  # write to stdout now (and flush)
    err: str | None = None  # a line for stderr, after ``out``
    started: bool = False  # the line in flight reached the agent (agent_response_start)
    answers: bool = False  # the line in flight has its answer


@dataclass
class _Run:
    started_at: float | None  # None: not timed (it may be history)


class StreamPrinter:
    """Turns the events and notices ``agentcast.Client`` yields into terminal text."""

    def __init__(self, agent_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.agent_id = agent_id
        self._clock = clock
        self._prefixes: dict[str, str] = {}  # open stream id -> its line's prefix
        self._tools: dict[str, str] = {}  # tool call id -> its name, until its result
        self._line: str | None = None  # the stream whose line is open
        self._run: _Run | None = None
        self._connected_at = -REPLAY_WINDOW
        self._line_sent_at: float | None = None  # a line typed here, not yet begun a run
        self._last_seq = 0

    def connected(self) -> None:
        """A (re)connection was made: a replay may follow."""
        self._connected_at = self._clock()

    def line_sent(self) -> None:
        """A line typed here went out: the run that answers it is timed from now."""
        self._line_sent_at = self._clock()

    def break_line(self) -> str:
        """End the open line, if one is (before a line on stderr): what to print."""
        if self._line is None:
            return ""
        self._line = None
        return "\n"

    def receive(self, item: Mapping[str, Any]) -> Output:
        """What to print for ``item``: an event (it has ``channel`` and ``seq``) or a notice."""
        kind = item.get("type")
        if isinstance(item.get("seq"), int) and "channel" in item:
            self._last_seq = item["seq"]
            return Output(self._event(str(kind), item))
        if kind == "agent_response_start":
            return Output(started=True)
        if kind == "agent_response_end":
            self._line_sent_at = None  # answered, whether or not a run began
            return Output(answers=True)
        if kind == "server_error" and item.get("code") in STREAM_NOTICES:
            return Output(self.break_line(), err=self._notice(item))
        line = self.break_line() + describe(dict(item)) + "\n"
        return Output(line, answers=kind in LINE_ANSWERS)

    # ---- events --------------------------------------------------------------------

    def _event(self, kind: str, event: Mapping[str, Any]) -> str:
        if kind == "message_start":
            return self._open(event.get("message_id"), _label(event))
        if kind == "tool_call_start":
            name = _text(event.get("name"))
            self._tools[_text(event.get("tool_call_id"))] = name
            return self._open(event.get("tool_call_id"), f"tool {name}")
        if kind == "message_delta":
            return self._piece(_stream_id(event), "message", _text(event.get("delta")))
        if kind == "tool_call_delta":
            return self._piece(_stream_id(event), "tool", _text(event.get("delta")))
        if kind in ("message_end", "tool_call_end"):
            return self._close(_stream_id(event))
        if kind == "message":
            return self._whole(_label(event), _text(event.get("content")))
        if kind == "tool_result":
            name = self._tools.pop(_text(event.get("tool_call_id")), "?")
            return self._whole(f"result {name}", _text(event.get("content")))
        if kind == "run_start":
            self._run_started()
            return ""
        if kind in ("run_end", "run_error"):
            return self._run_ended(event)
        if kind == "step_start":
            return self._whole("step", _text(event.get("step")))
        if kind == "step_end":
            return ""
        return self._whole(_other_label(kind, event), _json(_other_value(kind, event)))

    def _open(self, stream_id: object, label: str) -> str:
        stream = _text(stream_id)
        self._prefixes[stream] = f"[{for_terminal(label)}"
        return self.break_line() + self._take_line(stream, "] ")

    def _piece(self, stream: str, label: str, text: str) -> str:
        if stream not in self._prefixes:  # its start was not seen (not kept)
            self._prefixes[stream] = f"[{label}"
        out = "" if self._line == stream else self.break_line() + self._take_line(stream, " …] ")
        return out + for_terminal(text)

    def _take_line(self, stream: str, closing: str) -> str:
        self._line = stream
        return self._prefixes[stream] + closing

    def _close(self, stream: str) -> str:
        self._prefixes.pop(stream, None)
        if self._line != stream:
            return ""
        self._line = None
        return "\n"

    def _whole(self, label: str, text: str) -> str:
        return self.break_line() + for_terminal(f"[{label}] {text}") + "\n"

    def _run_started(self) -> None:
        now = self._clock()
        if self._line_sent_at is not None:
            started_at: float | None = self._line_sent_at
        elif now - self._connected_at > REPLAY_WINDOW:
            started_at = now
        else:
            started_at = None
        self._line_sent_at = None
        self._run = _Run(started_at)

    def _run_ended(self, event: Mapping[str, Any]) -> str:
        if event.get("type") == "run_error":
            parts = [f"run error: {_text(event.get('message'))}"]
        else:
            parts = [f"run {_text(event.get('outcome'))}"]
        if "usage" in event:
            parts.append(f"usage: {_usage(event['usage'])}")
        run, self._run = self._run, None
        if run is not None and run.started_at is not None:
            parts.append(f"took {self._clock() - run.started_at:.2f} s")
        else:
            parts.append("not timed: it may have begun before this client joined")
        self._prefixes.clear()  # streams left open end with their run
        return self.break_line() + for_terminal(f"-- {' · '.join(parts)} --") + "\n"

    # ---- notices -------------------------------------------------------------------

    def _notice(self, frame: Mapping[str, Any]) -> str:
        if frame.get("code") == notices.CHANNEL_RESTARTED and (
            frame.get("agent_id", frame.get("channel")) == self.agent_id
        ):
            before, self._last_seq = self._last_seq, 0
            return for_terminal(
                f"{self.agent_id}'s numbering restarted on the server (this client had seen"
                f" up to seq {before}): counting again from 1"
            )
        return describe(dict(frame))


def _text(value: object) -> str:
    """A field's text; one missing or not text (a server's bug) is shown as nothing."""
    return value if isinstance(value, str) else ""


def _stream_id(event: Mapping[str, Any]) -> str:
    return _text(event.get("message_id", event.get("tool_call_id")))


def _label(event: Mapping[str, Any]) -> str:
    """``reasoning`` for a reasoning message, else the message's role (``assistant``, ...)."""
    return "reasoning" if event.get("kind") == "reasoning" else _text(event.get("role"))


def _other_label(kind: str, event: Mapping[str, Any]) -> str:
    if kind == "custom":
        return f"custom {_text(event.get('name'))}"
    return kind.replace("_", " ")


def _other_value(kind: str, event: Mapping[str, Any]) -> Any:
    """What a state or custom event carries (an unknown one: its fields)."""
    field = {"state_snapshot": "snapshot", "state_patch": "patch", "custom": "value"}.get(kind)
    if field is not None:
        return event.get(field)
    return {k: v for k, v in event.items() if k not in ("type", "channel", "seq")}


def _usage(usage: object) -> str:
    if isinstance(usage, Mapping):
        return ", ".join(f"{key} {_json(value)}" for key, value in usage.items())
    return _json(usage)


def _json(value: object) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
