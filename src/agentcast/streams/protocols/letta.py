"""Letta's streamed messages (``letta-client`` 1.12.1, ``LettaStreamingResponse``) for the
event model.

Each piece of text is a message chunk with its message's ``id`` (token streaming: the
client joins the chunks of one ``id`` and ``message_type``), the seq as ``seq_id`` (the
cursor Letta's own resume takes, ``starting_after``) and the run as ``run_id``. ``date``
is required by the schema: the time the chunk is encoded. A tool call is its start (name,
empty arguments) then its argument pieces, each naming the call; its result is a
``tool_return_message`` with an id of its own. A run ends as Letta's do: ``stop_reason``,
``usage_statistics`` when the run reported token counts, ``[DONE]``; a failed run has
``stop_reason`` "error" and an ``error_message`` before ``[DONE]``. Starts and ends
without text, steps, state and custom events have no Letta shape: nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime, timezone
from typing import Any, Final

import orjson

from agentcast.streams.protocols.common import DONE, builders, result_id, token_counts

__all__ = ["encode"]

Event = dict[str, Any]
_Build = Callable[[Event, Event | None], list[Event]]  # (event, item) -> the message bodies

_dumps: Final = orjson.dumps
_STOP_REASONS: Final = {  # "interrupted": it stopped before its turn ended, as if cancelled
    "success": "end_turn",
    "error": "error",
    "cancelled": "cancelled",
    "interrupted": "cancelled",
}
# a usage count's name (common.token_counts) -> Letta's name for it
_USAGE_NAMES: Final = {
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "total_tokens": "total_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "cached_input_tokens": "cached_input_tokens",
    "cache_write_input_tokens": "cache_write_tokens",
}
_ENDS: Final = frozenset({"run_end", "run_error"})


def encode(
    channel: Hashable,
    event: Event,
    seq: int,
    from_seq: int | None,
    item: Event | None,
    run: Event | None,
) -> list[bytes]:
    """The Letta messages for ``event``, each with ``seq_id`` ``seq`` (a merged delta's last)."""
    kind = event["type"]
    build = _BUILD.get(kind)
    if build is None:
        return []
    if kind in _ENDS:
        return [_dumps(body) for body in build(event, item)] + [DONE]
    common: Event = {"date": datetime.now(timezone.utc), "seq_id": seq}  # orjson: RFC 3339
    if run is not None:
        common["run_id"] = run["run_id"]
    return [_dumps({**body, **common}) for body in build(event, item)]


def _text(message: Event, message_id: str, text: str) -> Event:
    """The chunk of ``text`` of ``message`` (a start or the message itself): reasoning,
    or the content of a user, system or assistant message."""
    if message["kind"] == "reasoning":
        return {"message_type": "reasoning_message", "id": message_id, "reasoning": text}
    role = message["role"]
    if role == "user":
        message_type = "user_message"
    elif role in ("system", "developer"):
        message_type = "system_message"
    else:
        message_type = "assistant_message"
    return {"message_type": message_type, "id": message_id, "content": text}


def _tool_call(call_id: str, name: str, arguments: str) -> Event:
    return {
        "message_type": "tool_call_message",
        "id": call_id,
        "tool_call": {"name": name, "arguments": arguments, "tool_call_id": call_id},
    }


def _message_delta(event: Event, item: Event | None) -> list[Event]:
    return [] if item is None else [_text(item, event["message_id"], event["delta"])]


def _message(event: Event, item: Event | None) -> list[Event]:
    return [_text(event, event["message_id"], event["content"])]


def _tool_call_start(event: Event, item: Event | None) -> list[Event]:
    return [_tool_call(event["tool_call_id"], event["name"], "")]


def _tool_call_delta(event: Event, item: Event | None) -> list[Event]:
    if item is None:
        return []
    return [_tool_call(event["tool_call_id"], item["name"], event["delta"])]


def _tool_result(event: Event, item: Event | None) -> list[Event]:
    call_id = event["tool_call_id"]
    return [
        {
            "message_type": "tool_return_message",
            "id": result_id(call_id),
            "tool_return": event["content"],
            "status": "success",
            "tool_call_id": call_id,
        }
    ]


def _run_end(event: Event, item: Event | None) -> list[Event]:
    stop = {
        "message_type": "stop_reason",
        "stop_reason": _STOP_REASONS.get(event["outcome"], "end_turn"),
    }
    counts = token_counts(event.get("usage"))
    if not counts:
        return [stop]
    usage = {_USAGE_NAMES[name]: value for name, value in counts.items()}
    return [stop, {"message_type": "usage_statistics", **usage}]


def _run_error(event: Event, item: Event | None) -> list[Event]:
    return [
        {"message_type": "stop_reason", "stop_reason": "error"},
        {
            "message_type": "error_message",
            "error_type": "internal_error",
            "message": event["message"],
            "run_id": event["run_id"],
        },
    ]


_BUILD: Final[dict[str, _Build]] = builders(globals())
