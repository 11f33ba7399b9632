"""The one object the core holds for agent event streams: open-run state and encodings.

Called on the core's loop thread once per event, never per client. ``on_event`` observes
an event into the open runs and returns what its encodings need besides it (its item and
the open run); the core builds each encoding's frame from that only when a client of that
encoding needs it (``agentcast._frames``), with ``payloads``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

import orjson

from agentcast.streams import protocols
from agentcast.streams.encodings import ENCODINGS, MEMGPT_KINDS, NATIVE, is_sse, memgpt, native
from agentcast.streams.events import EVENT_KINDS, BadEvent, check_event
from agentcast.streams.runs import OpenRuns

__all__ = ["Context", "Encoder", "EventCodec", "SnapshotEvent"]

Item = dict[str, Any] | None
Context = tuple[Item, Item]
"""An event's item (``OpenRuns.observe``) and its channel's open run (its ``run_start``)."""
Encoder = protocols.Encode
"""(channel, event, seq, from_seq, item, run) -> the encoding's payloads for the event,
in order (none: it has no frame for it)."""
SnapshotEvent = tuple[dict[str, Any], int, "int | None", Item, Item]
"""A snapshot's event (without seq), seq, from_seq (a merged delta), item and run."""

_SET_BY_SERVER: Final = ("channel", "seq", "from_seq")


def _memgpt(
    channel: Hashable, event: dict[str, Any], seq: int, from_seq: int | None, item: Item, run: Item
) -> list[bytes]:
    if event["type"] not in MEMGPT_KINDS:
        return []
    frame = memgpt(channel, event, seq, item)
    return [] if frame is None else [frame]


def _native(
    channel: Hashable, event: dict[str, Any], seq: int, from_seq: int | None, item: Item, run: Item
) -> list[bytes]:
    return [native(channel, event, seq, from_seq)]


PROTOCOL_ENCODERS: Final[dict[str, Encoder]] = {
    "memgpt": _memgpt,
    "agentcast": _native,
    **protocols.PROTOCOLS,
}


class EventCodec:
    """Observe each event into the open runs, and encode it for any encoding.

    ``sse`` and ``events_only`` are by encoding id (the core reads them once): an SSE
    encoding's frames are SSE events; an events-only encoding's clients get agent events
    and nothing a producer published as a plain message (only MemGPT's and the native
    protocol over WebSocket take those).
    """

    def __init__(self, runs: OpenRuns | None = None) -> None:
        self.runs = OpenRuns() if runs is None else runs
        self._observe = self.runs.observe
        self._open_run = self.runs.open_run
        self._encoders = tuple(PROTOCOL_ENCODERS[name.partition("+")[0]] for name in ENCODINGS)
        self.sse = bytes(is_sse(i) for i in range(len(ENCODINGS)))
        self.events_only = bytes(i > NATIVE for i in range(len(ENCODINGS)))

    def on_event(self, channel: Hashable, event: dict[str, Any], seq: int) -> Context:
        """Observe ``event`` numbered ``seq`` on ``channel``: its item and open run."""
        run = self._open_run(channel)  # before: a run_end's is the run it ends
        item = self._observe(channel, event, seq)
        if event["type"] == "run_start":
            run = event
        return item, run

    def payloads(
        self,
        encoding: int,
        channel: Hashable,
        event: dict[str, Any],
        seq: int,
        from_seq: int | None,
        item: Item,
        run: Item,
    ) -> list[bytes]:
        """``event``'s payloads in ``encoding`` (``from_seq``: a merged delta's first seq)."""
        return self._encoders[encoding](channel, event, seq, from_seq, item, run)

    def snapshot(self, channel: Hashable, since: int) -> list[SnapshotEvent] | None:
        """``OpenRuns.snapshot`` with what encoding needs: (event, seq, from_seq, item, run)
        per event; None when the state was not kept whole."""
        entries = self.runs.snapshot_items(channel, since)
        if entries is None:
            return None
        run = self._open_run(channel)
        events: list[SnapshotEvent] = []
        for event, item in entries:  # new dicts, the snapshot's own
            seq = event.pop("seq")
            events.append((event, seq, event.pop("from_seq", None), item, run))
        return events

    def run_seq(self, channel: Hashable) -> int:
        """The seq of ``channel``'s open run's start; 0 when none is open."""
        return self.runs.run_seq(channel)

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
