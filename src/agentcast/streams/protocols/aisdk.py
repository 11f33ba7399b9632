"""The AI SDK's UI message stream v1 (``ai`` 6.0.333) for the event model.

A run is one UI message: ``start`` carries the run id as ``messageId``, which ``useChat``
merges a replay by (without it a resume duplicates the message). The JSON has no seq:
``ai`` before 6.0.231 refuses unknown keys; the seq travels in the SSE ``id:`` only.
Every run ends with ``finish`` and ``[DONE]`` (after ``error`` for a failed run), so no
client is left waiting, even for an end whose run is unknown.

What the client's reader refuses is never sent: nothing outside a run (a part would land
in no message), no delta, end or tool output whose start is unknown (``item`` None), no
text of a user, system or developer message (not the assistant's: the client holds the
user's own message). Empty deltas are dropped, being legal but empty. ``start-step`` and
``finish-step`` come only from steps: parts need no open step, and a stateless encoder
cannot know whether one is open at ``run_end``. State goes out as the data part
``data-agentcast-state`` (id "state": each replaces the last in place); a patch does
too when ``item`` is the state after it (``{"snapshot": ...}``), else it goes out as
``data-agentcast-state-patch``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Final

import orjson

from agentcast.streams.protocols.common import DONE, builders

__all__ = ["DONE", "encode"]

Event = dict[str, Any]
_Build = Callable[[Event, Event | None], list[Event]]  # (event, item) -> the chunks

_dumps: Final = orjson.dumps
_FINISH_REASONS: Final = {
    "success": "stop",
    "error": "error",
    "cancelled": "other",
    "interrupted": "other",
}
_NOT_THE_ASSISTANTS: Final = frozenset({"user", "system", "developer"})
_ALWAYS: Final = frozenset({"run_start", "run_end", "run_error"})  # sent outside a run too
_ENDS: Final = frozenset({"run_end", "run_error"})


def encode(
    channel: Hashable,
    event: Event,
    seq: int,
    from_seq: int | None,
    item: Event | None,
    run: Event | None,
) -> list[bytes]:
    """The UI message stream chunks for ``event``; ``[DONE]`` last at a run's end."""
    kind = event["type"]
    build = _BUILD.get(kind)
    if build is None or (run is None and kind not in _ALWAYS):
        return []
    chunks = [_dumps(chunk) for chunk in build(event, item)]
    if kind in _ENDS:
        chunks.append(DONE)
    return chunks


def _part(message: Event, stage: str) -> Event:
    family = "reasoning" if message["kind"] == "reasoning" else "text"
    return {"type": f"{family}-{stage}", "id": message["message_id"]}


def _shown(message: Event | None) -> bool:
    return message is not None and message["role"] not in _NOT_THE_ASSISTANTS


def _run_start(event: Event, item: Event | None) -> list[Event]:
    return [{"type": "start", "messageId": event["run_id"]}]


def _run_end(event: Event, item: Event | None) -> list[Event]:
    return [{"type": "finish", "finishReason": _FINISH_REASONS.get(event["outcome"], "other")}]


def _run_error(event: Event, item: Event | None) -> list[Event]:
    return [
        {"type": "error", "errorText": event["message"]},
        {"type": "finish", "finishReason": "error"},
    ]


def _step_start(event: Event, item: Event | None) -> list[Event]:
    return [{"type": "start-step"}]


def _step_end(event: Event, item: Event | None) -> list[Event]:
    return [{"type": "finish-step"}]


def _message_start(event: Event, item: Event | None) -> list[Event]:
    return [_part(event, "start")] if _shown(event) else []


def _message_delta(event: Event, item: Event | None) -> list[Event]:
    if item is None or not event["delta"] or not _shown(item):
        return []
    return [{**_part(item, "delta"), "delta": event["delta"]}]


def _message_end(event: Event, item: Event | None) -> list[Event]:
    return [_part(item, "end")] if item is not None and _shown(item) else []


def _message(event: Event, item: Event | None) -> list[Event]:
    if not _shown(event):
        return []
    if not event["content"]:
        return [_part(event, "start"), _part(event, "end")]
    delta = {**_part(event, "delta"), "delta": event["content"]}
    return [_part(event, "start"), delta, _part(event, "end")]


def _tool_call_start(event: Event, item: Event | None) -> list[Event]:
    return [
        {"type": "tool-input-start", "toolCallId": event["tool_call_id"], "toolName": event["name"]}
    ]


def _tool_call_delta(event: Event, item: Event | None) -> list[Event]:
    if item is None or not event["delta"]:
        return []
    return [
        {
            "type": "tool-input-delta",
            "toolCallId": event["tool_call_id"],
            "inputTextDelta": event["delta"],
        }
    ]


def _tool_call_end(event: Event, item: Event | None) -> list[Event]:
    """``tool-input-available`` with the parsed arguments (none: ``{}``), or
    ``tool-input-error`` with their text when they are not JSON."""
    if item is None:
        return []
    call = {"toolCallId": item["tool_call_id"], "toolName": item["name"]}
    text: str = item["arguments"]
    try:
        arguments = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError as exc:
        error = f"the arguments are not JSON: {exc}"
        return [{"type": "tool-input-error", **call, "input": text, "errorText": error}]
    return [{"type": "tool-input-available", **call, "input": arguments}]


def _tool_result(event: Event, item: Event | None) -> list[Event]:
    if item is None:  # the client has no part for the call: it would fail the stream
        return []
    return [
        {
            "type": "tool-output-available",
            "toolCallId": event["tool_call_id"],
            "output": event["content"],
        }
    ]


def _state_snapshot(event: Event, item: Event | None) -> list[Event]:
    return [{"type": "data-agentcast-state", "id": "state", "data": event["snapshot"]}]


def _state_patch(event: Event, item: Event | None) -> list[Event]:
    if item is not None:
        return _state_snapshot(item, None)
    return [{"type": "data-agentcast-state-patch", "data": event["patch"]}]


def _custom(event: Event, item: Event | None) -> list[Event]:
    return [{"type": f"data-{event['name']}", "data": event.get("value")}]


_BUILD: Final[dict[str, _Build]] = builders(globals())
