"""What the benchmarks publish: small JSON events, like an agent streaming its progress."""

from __future__ import annotations

import json
from typing import Any

MESSAGE_BYTES = 200
BURST = 2000
_WORDS = "the agent thinks about the next step and streams it to every viewer "


def message(seq: int) -> dict[str, Any]:
    """An event that serializes (compact, as orjson does) to exactly ``MESSAGE_BYTES`` bytes."""
    event: dict[str, Any] = {"type": "token", "agent": "planner", "seq": seq, "text": ""}
    room = MESSAGE_BYTES - len(json.dumps(event, separators=(",", ":")))
    event["text"] = (_WORDS * (room // len(_WORDS) + 1))[:room]
    return event
