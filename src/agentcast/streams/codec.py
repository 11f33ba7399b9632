"""The one object the core holds for agent event streams: open-run state and encodings.

Called on the core's loop thread once per event, never per client. ``on_event`` returns
the event's frame in every encoding (indexed by encoding id) so a tick serializes each
event once per encoding, whatever the number of watchers.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

import orjson

from agentcast.streams.encodings import MEMGPT, MEMGPT_KINDS, NATIVE, memgpt, native
from agentcast.streams.events import EVENT_KINDS, BadEvent, check_event
from agentcast.streams.runs import OpenRuns

__all__ = ["EventCodec", "Payloads"]

Payloads = tuple[bytes | None, bytes]
"""An event's frames by encoding id: (MemGPT's or None, native)."""

_SET_BY_SERVER: Final = ("channel", "seq", "from_seq")


class EventCodec:
    """Observe each event into the open runs, and encode it for every encoding."""

    def __init__(self, runs: OpenRuns | None = None) -> None:
        self.runs = OpenRuns() if runs is None else runs
        self._observe = self.runs.observe

    def on_event(self, channel: Hashable, event: dict[str, Any], seq: int) -> Payloads:
        """The frames of ``event`` numbered ``seq`` on ``channel``, after observing it."""
        done = self._observe(channel, event, seq)
        if event["type"] in MEMGPT_KINDS:
            return memgpt(channel, event, seq, done), native(channel, event, seq)
        return None, native(channel, event, seq)

    def merged(
        self,
        encoding: int,
        channel: Hashable,
        event: dict[str, Any],
        delta: str,
        from_seq: int,
        seq: int,
    ) -> bytes | None:
        """The frame of deltas ``from_seq``..``seq`` of one id merged into ``delta``.

        ``event`` is the first delta of the merge (its kind and id). MemGPT has no delta
        frames: None.
        """
        if encoding == NATIVE:
            return native(channel, {**event, "delta": delta}, seq, from_seq)
        if encoding == MEMGPT:
            return None
        raise ValueError(f"unknown encoding id {encoding!r}")

    def snapshot(self, channel: Hashable, since: int) -> list[tuple[int, Payloads]] | None:
        """``OpenRuns.snapshot`` encoded: (seq, frames) per event. MemGPT clients never got
        replays of open runs and do not now: their frame is None."""
        events = self.runs.snapshot(channel, since)
        if events is None:
            return None
        frames: list[tuple[int, Payloads]] = []
        for event in events:  # new dicts, the snapshot's own
            seq = event.pop("seq")
            from_seq = event.pop("from_seq", None)
            frames.append((seq, (None, native(channel, event, seq, from_seq))))
        return frames

    def decode(self, payload: bytes) -> dict[str, Any] | None:
        """The event in a numbered frame back from the backplane, or None when ``payload``
        is not an event (a MemGPT frame, anything else: it is sent as it is)."""
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict):
            return None
        kind = body.get("type")
        if not isinstance(kind, str) or kind not in EVENT_KINDS:
            return None
        for field in _SET_BY_SERVER:
            body.pop(field, None)
        try:
            return check_event(body)
        except BadEvent:
            return None

    def forget(self, channel: Hashable) -> None:
        """Drop ``channel``'s open-run state (the core freed the channel)."""
        self.runs.forget(channel)
