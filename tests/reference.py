"""The oracle: a plain-Python fan-out with the semantics the Cython core must have.

Each client's byte stream is the frames of every operation addressed to it,
in queue order: broadcasts, messages of channels it was subscribed to at that
point of the queue, direct messages, and a resume's replay of what it does not hold.
"""

from __future__ import annotations

from collections.abc import Hashable

from agentcast import notices


def frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes([0x81, n])
    elif n < 65536:
        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return header + payload


def stamp(payload: bytes, seq: int) -> bytes:
    """A JSON object gets ``"seq": N`` as its last member; anything else goes as it is."""
    if len(payload) >= 2 and payload[:1] == b"{" and payload[-1:] == b"}":
        return payload[:-1] + (b"," if len(payload) > 2 else b"") + b'"seq":%d}' % seq
    return payload


class ReferenceFanout:
    def __init__(self, client_ids: list[int], history_size: int = 1000) -> None:
        self.channels: dict[int, set[Hashable]] = {cid: set() for cid in client_ids}
        # client -> channel -> first seq of the unbroken run it holds up to now
        self.live_from: dict[int, dict[Hashable, int]] = {cid: {} for cid in client_ids}
        self.streams: dict[int, bytearray] = {cid: bytearray() for cid in client_ids}
        self.history: dict[Hashable, list[tuple[int, bytes]]] = {}
        self.last_seq: dict[Hashable, int] = {}
        self.history_size = history_size

    def publish(self, payload: bytes, channel: Hashable | None = None) -> None:
        if channel is not None:
            seq = self.last_seq[channel] = self.last_seq.get(channel, 0) + 1
            payload = stamp(payload, seq)
            kept = self.history.setdefault(channel, [])
            kept.append((seq, payload))
            del kept[: max(0, len(kept) - self.history_size)]
        for cid, channels in self.channels.items():
            if channel is None or channel in channels:
                self.streams[cid] += frame(payload)

    def resume(self, client_id: int, channel: Hashable, since: int) -> list[int]:
        """Subscribe and replay after ``since`` what the client does not hold yet (a gap
        notice first if that is gone, or if ``since`` is ahead of the channel)."""
        self.subscribe(client_id, channel)
        kept = self.history.get(channel, [])
        last = self.last_seq.get(channel, 0)
        first = kept[0][0] if kept else last + 1
        if since > last:
            since = self._gap_notice(client_id, channel, since, first, last)
        held_from = self.live_from[client_id][channel]
        if since + 1 >= held_from:
            return []
        if since + 1 < first:
            since = self._gap_notice(client_id, channel, since, first, last)
        replay = [(seq, payload) for seq, payload in kept if since < seq < held_from]
        for _, payload in replay:
            self.streams[client_id] += frame(payload)
        self.live_from[client_id][channel] = since + 1
        return [seq for seq, _ in replay]

    def _gap_notice(
        self, client_id: int, channel: Hashable, since: int, first: int, last: int
    ) -> int:
        notice = notices.resume_gap(channel, since, first, last)
        self.streams[client_id] += frame(notice)
        return first - 1

    def send(self, client_id: int, payload: bytes) -> None:
        self.streams[client_id] += frame(payload)

    def subscribe(self, client_id: int, channel: Hashable) -> None:
        if channel not in self.channels[client_id]:
            self.channels[client_id].add(channel)
            self.live_from[client_id][channel] = self.last_seq.get(channel, 0) + 1

    def unsubscribe(self, client_id: int, channel: Hashable) -> None:
        self.channels[client_id].discard(channel)
        self.live_from[client_id].pop(channel, None)
