"""Encodings of the event model: each event becomes one frame per encoding, built once.

An encoding is a wire protocol over a transport. ``MEMGPT`` (the default): a MemGPT
client sees whole messages exactly as today, one ``agent_response`` at a message's end
(or for a whole ``message``) and none for deltas or boundaries. ``NATIVE``
(``?protocol=agentcast``): every event as ``{"type", "channel", "seq", "from_seq"?,
...fields}``. ``agui``, ``aisdk`` and ``letta`` are the field's stream protocols
(``agentcast.streams.protocols``). Each protocol but MemGPT's is also served over SSE.
An encoding's id is its index in ``ENCODINGS``: the WebSocket ones first (the index of
their protocol in ``PROTOCOLS``), then the SSE ones, named ``<protocol>+sse``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

import orjson

from agentcast.memgpt.protocol import MessageType, agent_response

__all__ = [
    "ENCODINGS",
    "MEMGPT",
    "MEMGPT_KINDS",
    "NATIVE",
    "PROTOCOLS",
    "SSE_PROTOCOLS",
    "encoding_id",
    "is_sse",
    "memgpt",
    "native",
]

PROTOCOLS: Final = ("memgpt", "agentcast", "agui", "aisdk", "letta")
"""The wire protocols a connection may ask for (``?protocol=``)."""
SSE_PROTOCOLS: Final = PROTOCOLS[1:]
"""Those also served over SSE: MemGPT's clients speak WebSocket only."""
ENCODINGS: Final = PROTOCOLS + tuple(f"{name}+sse" for name in SSE_PROTOCOLS)
MEMGPT: Final = 0
NATIVE: Final = 1

MEMGPT_KINDS: Final = frozenset({"message", "message_end", "tool_call_end"})
"""The only events that may have a MemGPT frame."""
_dumps: Final = orjson.dumps
_ROLE_TYPES: Final[dict[str, MessageType]] = {
    "assistant": "assistant_message",
    "tool": "function_message",
    "function": "function_message",
}


def encoding_id(protocol: str, sse: bool = False) -> int:
    """The id of ``protocol``'s encoding over WebSocket (or SSE); ``ValueError`` naming the
    protocols there are."""
    names = SSE_PROTOCOLS if sse else PROTOCOLS
    if protocol not in names:
        raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(names)}")
    return ENCODINGS.index(f"{protocol}+sse" if sse else protocol)


def is_sse(encoding: int) -> bool:
    return ENCODINGS[encoding].endswith("+sse")


def native(
    channel: Hashable, event: dict[str, Any], seq: int, from_seq: int | None = None
) -> bytes:
    """The agentcast frame: type, channel, seq, from_seq (a merged delta), the fields."""
    if from_seq is None:
        return _dumps({"type": event["type"], "channel": channel, "seq": seq, **event})
    return _dumps(
        {"type": event["type"], "channel": channel, "seq": seq, "from_seq": from_seq, **event}
    )


def memgpt(
    channel: Hashable, event: dict[str, Any], seq: int, done: dict[str, Any] | None
) -> bytes | None:
    """The MemGPT ``agent_response`` for ``event``, or None when MemGPT has no frame for it.

    ``done`` is what ``OpenRuns.observe`` returned for the event: the completed message
    at ``message_end``, the completed tool call at ``tool_call_end``.
    """
    kind = event["type"]
    if kind not in MEMGPT_KINDS:
        return None
    agent_id = channel if isinstance(channel, str) else None
    if kind == "message":
        done = event
    elif done is None:  # the end of a message or tool call whose start was not seen
        return None
    elif kind == "tool_call_end":
        text = f"Running {done['name']}({_as_python(done['arguments'])})"
        return agent_response("function_message", text, agent_id=agent_id, seq=seq)
    message_type = _message_type(done["role"], done["kind"])
    if message_type is None:
        return None
    return agent_response(message_type, done["content"], agent_id=agent_id, seq=seq)


def _as_python(arguments: str) -> str:
    """A call's JSON arguments as MemGPT prints them (``{'message': 'hi'}``: Python's
    repr of the parsed object); text that is not JSON, as it is."""
    try:
        return repr(orjson.loads(arguments))
    except orjson.JSONDecodeError:
        return arguments


def _message_type(role: str, kind: str) -> MessageType | None:
    if kind == "reasoning":
        return "internal_monologue"
    return _ROLE_TYPES.get(role)
