"""The field's stream protocols: AG-UI, the AI SDK's UI message stream v1, Letta's messages.

One module per protocol, each with one ``encode`` of the same signature (``Encode``): the
event's payloads in that protocol, in order, ``[]`` when it has none. Pure functions,
called once per event per protocol present, never per client; what they must know of the
stream around the event comes as ``item`` (the message or tool call it belongs to) and
``run`` (the open run's ``run_start``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Final

from agentcast.streams.protocols import agui, aisdk, letta

__all__ = ["PROTOCOLS", "Encode"]

Encode = Callable[
    [Hashable, dict[str, Any], int, int | None, dict[str, Any] | None, dict[str, Any] | None],
    list[bytes],
]
"""``encode(channel, event, seq, from_seq, item, run)``."""

PROTOCOLS: Final[dict[str, Encode]] = {
    "agui": agui.encode,
    "aisdk": aisdk.encode,
    "letta": letta.encode,
}
"""Each protocol's ``encode`` by the name a client asks for it with (``?protocol=``)."""
