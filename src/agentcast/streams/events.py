"""The agent event model: what a run on a channel is made of, checked where it is produced.

An event is a plain dict ``{"type": <kind>, ...fields}``; the channel and ``seq`` are
added when it is delivered (the channel's counter numbers every event, as it numbers
every message). Ids (run, message, tool call) are the producer's. ``message`` is a
whole message in one event (start, all its text and end): what a MemGPT step's
message is, and what a producer that does not stream sends.

Only ``message_delta`` and ``tool_call_delta`` may be merged for a slow watcher (their
``delta`` pieces of one id concatenated, the merged event naming the seqs it covers with
``from_seq``); every other event is a boundary and always goes out as it is.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = [
    "DELTA_KINDS",
    "EVENT_KINDS",
    "STREAM_ID",
    "BadEvent",
    "check_channel",
    "check_event",
]

# kind -> its required fields and their types (``str`` fields must be non-empty ids
# unless listed in ``_MAY_BE_EMPTY``)
_REQUIRED: Final[dict[str, dict[str, type | tuple[type, ...]]]] = {
    "run_start": {"run_id": str},
    "run_end": {"run_id": str, "outcome": str},
    "run_error": {"run_id": str, "message": str},
    "step_start": {"run_id": str, "step": str},
    "step_end": {"run_id": str, "step": str},
    "message_start": {"message_id": str, "role": str, "kind": str},
    "message_delta": {"message_id": str, "delta": str},
    "message_end": {"message_id": str},
    "message": {"message_id": str, "role": str, "kind": str, "content": str},
    "tool_call_start": {"tool_call_id": str, "name": str},
    "tool_call_delta": {"tool_call_id": str, "delta": str},
    "tool_call_end": {"tool_call_id": str},
    "tool_result": {"tool_call_id": str, "content": str},
    "state_snapshot": {"snapshot": (dict, list, str, int, float, bool)},
    "state_patch": {"patch": list},
    "custom": {"name": str},
}
_MAY_BE_EMPTY: Final = frozenset({"delta", "content", "message"})

EVENT_KINDS: Final = frozenset(_REQUIRED)
DELTA_KINDS: Final = frozenset({"message_delta", "tool_call_delta"})
STREAM_ID: Final = {
    "message_start": "message_id",
    "message_delta": "message_id",
    "message_end": "message_id",
    "message": "message_id",
    "tool_call_start": "tool_call_id",
    "tool_call_delta": "tool_call_id",
    "tool_call_end": "tool_call_id",
    "tool_result": "tool_call_id",
}
"""The field naming the stream (message or tool call) an event belongs to."""

MESSAGE_KINDS: Final = ("text", "reasoning")
RUN_OUTCOMES: Final = ("success", "error", "cancelled", "interrupted")
# Kinds whose fields may hold any value: checked to be JSON when made, not on the loop.
_FREE_FORM: Final = frozenset({"state_snapshot", "state_patch", "custom", "run_end"})
# Fields the server sets: a producer's own would be overwritten or would lie.
_RESERVED: Final = frozenset({"channel", "seq", "from_seq"})


class BadEvent(ValueError):
    """An event that does not fit the model: raised in the producer, before it is queued."""


def check_channel(channel: Any) -> Any:
    """``channel`` if events can go to it (a str or an int: it is written into every
    frame), else ``BadEvent``."""
    if isinstance(channel, bool) or not isinstance(channel, (str, int)):
        raise BadEvent(f"an event's channel is a str or an int, not {type(channel).__name__}")
    return channel


def check_event(event: Any) -> dict[str, Any]:
    """``event`` if it is a well-formed event, else ``BadEvent`` saying what is wrong."""
    if not isinstance(event, dict):
        raise BadEvent(f"an event is a dict, not {type(event).__name__}")
    kind = event.get("type")
    required = _REQUIRED.get(kind) if isinstance(kind, str) else None
    if required is None:
        raise BadEvent(f"unknown event type {kind!r}; one of {', '.join(sorted(EVENT_KINDS))}")
    for field, types in required.items():
        value = event.get(field)
        if not isinstance(value, types) or (
            isinstance(value, bool)
            and bool not in (types if isinstance(types, tuple) else (types,))
        ):
            raise BadEvent(f"{kind}: field {field!r} is required ({_names(types)})")
        if isinstance(value, str) and not value and field not in _MAY_BE_EMPTY:
            raise BadEvent(f"{kind}: field {field!r} must not be empty")
    reserved = _RESERVED.intersection(event)
    if reserved:
        raise BadEvent(f"{kind}: {', '.join(sorted(reserved))} are set by the server")
    if kind in ("message_start", "message") and event["kind"] not in MESSAGE_KINDS:
        raise BadEvent(f"{kind}: kind must be one of {MESSAGE_KINDS}, not {event['kind']!r}")
    if kind == "run_end" and event["outcome"] not in RUN_OUTCOMES:
        raise BadEvent(f"run_end: outcome must be one of {RUN_OUTCOMES}, not {event['outcome']!r}")
    if kind in _FREE_FORM:  # the producer's own values: they must be JSON, checked here
        try:
            orjson.dumps(event)
        except orjson.JSONEncodeError as exc:
            raise BadEvent(f"{kind}: not JSON-serializable: {exc}") from None
    if kind == "state_patch" and not all(
        isinstance(op, dict) and isinstance(op.get("op"), str) and isinstance(op.get("path"), str)
        for op in event["patch"]
    ):
        raise BadEvent("state_patch: patch must be a list of RFC 6902 operations (op, path)")
    return event


def _names(types: type | tuple[type, ...]) -> str:
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__
