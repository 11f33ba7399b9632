"""What a watcher's events add up to, with no I/O: the last seq per channel, and the
messages, tool calls and open runs assembled as the events come.

``StreamView`` is the part of ``agentcast.Client`` a reconnect must not disturb: it decides
which events are new (``accept``: an event whose seq is not above the channel's last one
was seen before, replayed by a resume) and which ``since`` a resubscribe asks for.

Replaying a snapshot is harmless: a ``message_start`` (or ``tool_call_start``) sets its
text back to empty, and the snapshot's one merged delta then carries the whole text so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypedDict

__all__ = ["KEEP", "StreamView", "ToolCall"]

KEEP: Final = 10_000
"""Messages and tool calls kept by default; the oldest go first (a long watch stays bounded)."""


class ToolCall(TypedDict):
    """One tool call as assembled so far."""

    name: str
    arguments: str  # the argument deltas joined: JSON text once the call has ended
    result: str | None  # the tool_result's content, None until it comes


class StreamView:
    """The assembled state of a watcher's channels, updated one event at a time."""

    def __init__(self, since: Mapping[str, int] | None = None, keep: int = KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.keep = keep
        self.last_seq: dict[str, int] = dict(since or {})
        """channel -> the highest seq seen; absent until an event of it is seen (or a
        ``since`` was given)."""
        self.messages: dict[str, str] = {}
        """message_id -> its text so far."""
        self.tool_calls: dict[str, ToolCall] = {}
        """tool_call_id -> its name, arguments so far and result."""
        self.runs: dict[str, dict[str, Any] | None] = {}
        """channel -> its open run (the ``run_start`` event), None once it has ended."""

    def since(self, channel: str) -> int | None:
        """What a (re)subscribe to ``channel`` resumes after: None (join live, with a
        snapshot of the open run) until something of it was seen."""
        return self.last_seq.get(channel)

    def restart(self, channel: str) -> None:
        """The server numbers ``channel`` afresh (``channel_restarted``), or restates it
        from a snapshot (``history_trimmed``): whatever follows is new."""
        self.last_seq[channel] = 0

    def accept(self, event: Mapping[str, Any]) -> bool:
        """Apply ``event`` and return True, or False if it was seen before (its ``seq`` is
        not above the channel's last; a merged delta counts by its last ``seq``)."""
        channel, seq = event["channel"], event["seq"]
        if seq <= self.last_seq.get(channel, 0):
            return False
        self.last_seq[channel] = seq
        self._apply(channel, event)
        return True

    def _apply(self, channel: str, event: Mapping[str, Any]) -> None:
        kind = event["type"]
        if kind == "run_start":
            self.runs[channel] = dict(event)
        elif kind in ("run_end", "run_error"):
            self.runs[channel] = None
        elif kind in ("message_start", "message"):
            self._set_text(event.get("message_id"), _text(event.get("content")))
        elif kind == "message_delta":
            message_id = event.get("message_id")
            if isinstance(message_id, str):
                text = self.messages.get(message_id, "") + _text(event.get("delta"))
                self._set_text(message_id, text)
        elif kind == "tool_call_start":
            call = self._tool_call(event.get("tool_call_id"), reset=True)
            if call is not None:
                call["name"] = _text(event.get("name"))
        elif kind == "tool_call_delta":
            call = self._tool_call(event.get("tool_call_id"))
            if call is not None:
                call["arguments"] += _text(event.get("delta"))
        elif kind == "tool_result":
            call = self._tool_call(event.get("tool_call_id"))
            if call is not None:
                call["result"] = _text(event.get("content"))

    def _set_text(self, message_id: object, text: str) -> None:
        if not isinstance(message_id, str):
            return
        self.messages[message_id] = text
        if len(self.messages) > self.keep:
            del self.messages[next(iter(self.messages))]

    def _tool_call(self, tool_call_id: object, reset: bool = False) -> ToolCall | None:
        if not isinstance(tool_call_id, str):
            return None
        call = self.tool_calls.get(tool_call_id)
        if call is None or reset:
            call = self.tool_calls[tool_call_id] = ToolCall(name="", arguments="", result=None)
            if len(self.tool_calls) > self.keep:
                del self.tool_calls[next(iter(self.tool_calls))]
        return call


def _text(value: object) -> str:
    """A field's text; a field that is missing or not text (a server's bug) adds nothing."""
    return value if isinstance(value, str) else ""
