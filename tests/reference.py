"""The oracle: a plain-Python fan-out with the semantics the Cython core must have.

Each client's byte stream is the frames of every operation addressed to it,
in queue order: broadcasts, messages of channels it was subscribed to at that
point of the queue, and direct messages.
"""

from __future__ import annotations

from collections.abc import Hashable


def frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes([0x81, n])
    elif n < 65536:
        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return header + payload


class ReferenceFanout:
    def __init__(self, client_ids: list[int]) -> None:
        self.channels: dict[int, set[Hashable]] = {cid: set() for cid in client_ids}
        self.streams: dict[int, bytearray] = {cid: bytearray() for cid in client_ids}

    def publish(self, payload: bytes, channel: Hashable | None = None) -> None:
        for cid, channels in self.channels.items():
            if channel is None or channel in channels:
                self.streams[cid] += frame(payload)

    def send(self, client_id: int, payload: bytes) -> None:
        self.streams[client_id] += frame(payload)

    def subscribe(self, client_id: int, channel: Hashable) -> None:
        self.channels[client_id].add(channel)

    def unsubscribe(self, client_id: int, channel: Hashable) -> None:
        self.channels[client_id].discard(channel)
