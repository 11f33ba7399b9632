"""The answers to a subscribe and an unsubscribe, in each wire protocol's words.

MemGPT's clients know ``command_response``; the native protocol names the channel in a
frame of its own type, so a client can tell an ack from an agent's message by ``type``.
"""

from __future__ import annotations

from collections.abc import Hashable

import orjson

from agentcast.memgpt import protocol
from agentcast.streams.encodings import ENCODINGS

__all__ = ["ACKS", "MemgptAcks", "NativeAcks"]


class MemgptAcks:
    @staticmethod
    def subscribed(channel: Hashable) -> bytes:
        return protocol.command_response(f"OK: subscribed to {channel}")

    @staticmethod
    def unsubscribed(channel: Hashable) -> bytes:
        return protocol.command_response(f"OK: unsubscribed from {channel}")


class NativeAcks:
    @staticmethod
    def subscribed(channel: Hashable) -> bytes:
        return orjson.dumps({"type": "subscribed", "channel": channel})

    @staticmethod
    def unsubscribed(channel: Hashable) -> bytes:
        return orjson.dumps({"type": "unsubscribed", "channel": channel})


ACKS: tuple[type[MemgptAcks] | type[NativeAcks], ...] = (MemgptAcks,) + (NativeAcks,) * (
    len(ENCODINGS) - 1
)
"""By encoding id (``agentcast.streams.encodings.ENCODINGS``): MemGPT's own; every other
protocol has none of its own, and gets the native ones (over SSE: a comment)."""
