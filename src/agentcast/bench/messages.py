"""What the benchmarks publish: small JSON events, like an agent streaming its progress."""

from __future__ import annotations

import json
import time
from typing import Any

MESSAGE_BYTES = 200
BURST = 2000
MIN_TEXT = 4  # characters: about one LLM token
_WORDS = "the agent thinks about the next step and streams it to every viewer "


def message(seq: int, size: int = MESSAGE_BYTES, sent_at: float | None = None) -> dict[str, Any]:
    """An event that serializes (compact, as orjson does) to exactly ``size`` bytes.

    With ``sent_at`` (a ``time.monotonic()`` reading) the event starts with
    ``"t"``, which the sampled receivers read without parsing the JSON; the
    padding is shortened to keep the size. Its number is ``n``: a channel refuses a
    message with a ``seq`` of its own (``--channels`` publishes it to channels).
    """
    event: dict[str, Any] = {} if sent_at is None else {"t": sent_at}
    event.update(type="token", agent="planner", n=seq, text="")
    room = size - len(json.dumps(event, separators=(",", ":")))
    if room < 0:
        raise ValueError(f"a message cannot be smaller than {size - room} bytes")
    event["text"] = (_WORDS * (room // len(_WORDS) + 1))[:room]
    return event


def agent_padding(agent: str, size: int) -> str:
    """The ``text`` that makes ``agent``'s stamped events (``agent_message``) about ``size``
    bytes; at least a token's ``MIN_TEXT`` characters, whatever the stamp and ids take."""
    bare = agent_message(agent, 0, "", time.monotonic())
    room = max(size - len(json.dumps(bare, separators=(",", ":"))), MIN_TEXT)
    return (_WORDS * (room // len(_WORDS) + 1))[:room]


def agent_message(agent: str, n: int, text: str, sent_at: float) -> dict[str, Any]:
    """Agent ``agent``'s ``n``-th event, stamped with ``sent_at`` for the receivers; ``n``,
    not ``seq``, because agentcast adds a ``seq`` of its own to a channel's messages."""
    return {"t": sent_at, "agent": agent, "n": n, "text": text}
