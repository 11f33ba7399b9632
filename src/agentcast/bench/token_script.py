"""What each agent streams in the ``tokens`` workload: runs of messages whose deltas carry
3-20 bytes of UTF-8 text each, made from a seed, so that the publisher in the server's
process and every watcher process make the same stream without sending it to each other.

The text has what real model output has and a careless merge or re-encoding would break:
multi-byte characters, quotes, backslashes and newlines (escaped in JSON).
"""

from __future__ import annotations

import random
from typing import Any, Final

import orjson

__all__ = [
    "DELTA_BYTES",
    "agent_stream",
    "envelope",
    "frame_bytes",
    "stream_bytes",
    "stream_texts",
]

DELTA_BYTES: Final = (3, 20)  # UTF-8 bytes of text per delta, inclusive
MESSAGE_DELTAS: Final = (20, 120)  # deltas per message, inclusive
RUN_MESSAGES: Final = (1, 3)  # messages per run, inclusive
BOUNDARIES: Final = 3  # a message's start and end, and its run's end
_PIECES: Final = (
    " the", " agent", " tool", " call", "ing", "ed", " to", " a", " of", " stream",
    " token", " is", ",", ".", " and", " it", " result", " caf\u00e9", " \u6771\u4eac",
    " na\u00efve", ' "quoted"', " \\path", "\n", "\n\n", " **", "`x`", " \U0001f642", "42",
)  # fmt: skip


def _delta_text(rng: random.Random) -> str:
    """Pieces of model-like text, 3-20 bytes of UTF-8 (a piece is never cut)."""
    low, high = DELTA_BYTES
    target = rng.randint(low, high)
    text, size = "", 0
    while size < target:
        piece = rng.choice(_PIECES)
        grown = size + len(piece.encode())
        if grown > high:
            break
        text, size = text + piece, grown
    return text + "x" * max(0, low - size)


def agent_stream(agent: str, at_least: int, seed: int) -> list[dict[str, Any]]:
    """``agent``'s events (no channel or seq: those are the server's), about ``at_least``
    of them (a few more to end the last message and run): runs of 1-3 messages of 20-120
    deltas each. The same arguments make the same stream in any process."""
    rng = random.Random(f"{seed}/{agent}")
    events: list[dict[str, Any]] = []
    runs = 0
    while len(events) < at_least:
        run_id = f"run-{agent}-{runs}"
        runs += 1
        events.append({"type": "run_start", "run_id": run_id})
        for _ in range(rng.randint(*RUN_MESSAGES)):
            room = at_least - len(events) - BOUNDARIES
            if room <= 0:
                break
            message_id = f"msg-{agent}-{len(events)}"
            events.append(
                {"type": "message_start", "message_id": message_id, "role": "assistant",
                 "kind": "text"}
            )  # fmt: skip
            for _ in range(min(rng.randint(*MESSAGE_DELTAS), room)):
                events.append(
                    {"type": "message_delta", "message_id": message_id, "delta": _delta_text(rng)}
                )
            events.append({"type": "message_end", "message_id": message_id})
        events.append({"type": "run_end", "run_id": run_id, "outcome": "success"})
    return events


def stream_texts(events: list[dict[str, Any]]) -> dict[str, str]:
    """Each message's whole text: what every watcher must assemble."""
    texts: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "message_start":
            texts[event["message_id"]] = []
        elif event["type"] == "message_delta":
            texts[event["message_id"]].append(event["delta"])
    return {message_id: "".join(pieces) for message_id, pieces in texts.items()}


def envelope(event: dict[str, Any], channel: str, seq: int) -> dict[str, Any]:
    """The event as agentcast's native protocol frames it (``streams.encodings.native``):
    what the peers without streams are handed, so every server sends the same JSON."""
    return {"type": event["type"], "channel": channel, "seq": seq, **event}


def frame_bytes(payload: int) -> int:
    """A server frame's size on the wire (header and payload) for a payload of ``payload``
    bytes."""
    return payload + (2 if payload < 126 else 4 if payload < 1 << 16 else 10)


def stream_bytes(events: list[dict[str, Any]], channel: str) -> int:
    """What ``events`` weigh on the wire to a watcher of ``channel``, one frame each."""
    return sum(
        frame_bytes(len(orjson.dumps(envelope(event, channel, seq))))
        for seq, event in enumerate(events, 1)
    )
