"""AG-UI 1.0 events (ag-ui-protocol, @ag-ui/client 1.0.0) for the event model.

The seq travels in ``metadata: {"agentcast": {"seq", "fromSeq"?}}`` (and in the SSE
``id:``), not as a top-level key: the 1.0 client strips unknown top-level keys with a
console warning per event, while ``metadata`` reaches subscribers and is folded into the
message (docs/research/ag-ui-and-letta.md, run D).

Nothing goes out outside a run (``run`` None) but a ``RUN_ERROR``: the client's verifier
takes only ``RUN_STARTED`` or ``RUN_ERROR`` first and nothing else after ``RUN_FINISHED``.
Reasoning messages are ``REASONING_MESSAGE_*`` (a text message may not have the role
"reasoning"), without the optional ``REASONING_START``/``END`` span. A delta or end whose
start is unknown (``item`` None) has nothing: the verifier refuses CONTENT, ARGS and END
without their START. A ``run_end`` with the outcome "error" is a ``RUN_ERROR``: AG-UI's
outcomes are success, interrupt and cancelled; "interrupted" is a ``RUN_FINISHED``
without an outcome (an interrupt needs ids and reasons the model does not have).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Final

import orjson

from agentcast.streams.protocols.common import builders, result_id, token_counts

__all__ = ["encode"]

Event = dict[str, Any]
# (event, item, channel, run) -> the events' bodies
_Build = Callable[[Event, Event | None, Hashable, Event | None], list[Event]]

_dumps: Final = orjson.dumps
_TEXT_ROLES: Final = frozenset({"developer", "system", "assistant", "user"})
_OUTCOMES: Final = {"success": {"type": "success"}, "cancelled": {"type": "cancelled"}}
_PATCH_NEEDS: Final = {  # RFC 6902: an operation's name -> the members it needs
    "add": ("value",),
    "remove": (),
    "replace": ("value",),
    "move": ("from",),
    "copy": ("from",),
    "test": ("value",),
}
_ALWAYS: Final = frozenset({"run_start", "run_error"})  # valid outside a run too


def encode(
    channel: Hashable,
    event: Event,
    seq: int,
    from_seq: int | None,
    item: Event | None,
    run: Event | None,
) -> list[bytes]:
    """The AG-UI events for ``event`` (numbered ``seq``; ``from_seq`` for a merged delta)."""
    kind = event["type"]
    build = _BUILD.get(kind)
    if build is None or (run is None and kind not in _ALWAYS):
        return []
    seqs = {"seq": seq} if from_seq is None else {"seq": seq, "fromSeq": from_seq}
    metadata = {"agentcast": seqs}
    return [_dumps({**body, "metadata": metadata}) for body in build(event, item, channel, run)]


def _family(message: Event) -> str:
    return "REASONING" if message["kind"] == "reasoning" else "TEXT"


def _start(message: Event) -> Event:
    if message["kind"] == "reasoning":
        role = "reasoning"
    else:
        role = message["role"] if message["role"] in _TEXT_ROLES else "assistant"
    return {
        "type": f"{_family(message)}_MESSAGE_START",
        "messageId": message["message_id"],
        "role": role,
    }


def _content(message: Event, delta: str) -> Event:
    return {
        "type": f"{_family(message)}_MESSAGE_CONTENT",
        "messageId": message["message_id"],
        "delta": delta,
    }


def _end(message: Event) -> Event:
    return {"type": f"{_family(message)}_MESSAGE_END", "messageId": message["message_id"]}


def _run_start(event: Event, item: Event | None, channel: Hashable, *_: object) -> list[Event]:
    return [{"type": "RUN_STARTED", "threadId": _thread(channel, event), "runId": event["run_id"]}]


def _run_end(event: Event, item: Event | None, channel: Hashable, run: Event | None) -> list[Event]:
    body: Event
    if event["outcome"] == "error":
        body = {"type": "RUN_ERROR", "message": f"run {event['run_id']} ended with an error"}
    else:
        thread = _thread(channel, run or event)
        body = {"type": "RUN_FINISHED", "threadId": thread, "runId": event["run_id"]}
        outcome = _OUTCOMES.get(event["outcome"])
        if outcome is not None:
            body["outcome"] = outcome
    usage = _usage(event.get("usage"))
    if usage is not None:
        body["usage"] = usage
    return [body]


def _run_error(event: Event, *_: object) -> list[Event]:
    return [{"type": "RUN_ERROR", "message": event["message"]}]


def _step_start(event: Event, *_: object) -> list[Event]:
    return [{"type": "STEP_STARTED", "stepName": event["step"]}]


def _step_end(event: Event, *_: object) -> list[Event]:
    return [{"type": "STEP_FINISHED", "stepName": event["step"]}]


def _message_start(event: Event, *_: object) -> list[Event]:
    return [_start(event)]


def _message_delta(event: Event, item: Event | None, *_: object) -> list[Event]:
    return [] if item is None else [_content(item, event["delta"])]


def _message_end(event: Event, item: Event | None, *_: object) -> list[Event]:
    return [] if item is None else [_end(item)]


def _message(event: Event, *_: object) -> list[Event]:
    return [_start(event), _content(event, event["content"]), _end(event)]


def _tool_call_start(event: Event, *_: object) -> list[Event]:
    body = {
        "type": "TOOL_CALL_START",
        "toolCallId": event["tool_call_id"],
        "toolCallName": event["name"],
    }
    if "parent_message_id" in event:
        body["parentMessageId"] = event["parent_message_id"]
    return [body]


def _tool_call_delta(event: Event, item: Event | None, *_: object) -> list[Event]:
    if item is None:
        return []
    return [
        {"type": "TOOL_CALL_ARGS", "toolCallId": event["tool_call_id"], "delta": event["delta"]}
    ]


def _tool_call_end(event: Event, item: Event | None, *_: object) -> list[Event]:
    return [] if item is None else [{"type": "TOOL_CALL_END", "toolCallId": event["tool_call_id"]}]


def _tool_result(event: Event, *_: object) -> list[Event]:
    call_id = event["tool_call_id"]
    return [
        {
            "type": "TOOL_CALL_RESULT",
            "messageId": result_id(call_id),
            "toolCallId": call_id,
            "content": event["content"],
            "role": "tool",
        }
    ]


def _state_snapshot(event: Event, *_: object) -> list[Event]:
    return [{"type": "STATE_SNAPSHOT", "snapshot": event["snapshot"]}]


def _state_patch(event: Event, *_: object) -> list[Event]:
    """``STATE_DELTA``, or nothing for a patch AG-UI's schema would refuse (the client
    fails the run on it; the open run's state skips such a patch too)."""
    patch = event["patch"]
    for op in patch:
        needs = _PATCH_NEEDS.get(op["op"])
        if needs is None or not all(member in op for member in needs):
            return []
    return [{"type": "STATE_DELTA", "delta": patch}]


def _custom(event: Event, *_: object) -> list[Event]:
    return [{"type": "CUSTOM", "name": event["name"], "value": event.get("value")}]


def _thread(channel: Hashable, run: Event) -> str:
    thread_id = run.get("thread_id")
    return thread_id if isinstance(thread_id, str) else str(channel)


def _usage(usage: Any) -> list[Event] | None:
    """AG-UI's ``usage`` (one entry, camelCase counts), or None when ``usage`` has none."""
    counts = token_counts(usage)
    if not counts:
        return None
    return [{_camel(name): value for name, value in counts.items()}]


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


_BUILD: Final[dict[str, _Build]] = builders(globals())
