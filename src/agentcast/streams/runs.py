"""Open runs per channel: what renders a streamed message whole at its end, and what a
watcher that joins mid-run must get first so the stream is valid from its first frame.

The core calls ``OpenRuns.observe`` on its loop thread once per event (never per client):
a delta costs a dict lookup and two appends. Events have passed ``check_event`` in the
producer; what the producer may still get wrong (a delta of an id never started, an end
twice, a patch that does not apply) is tolerated and counted, never raised: the core
must not fail. Memory is bounded per channel (``max_run_bytes``) and in all
(``max_total_bytes``); a channel whose state had to go answers ``snapshot`` with None.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from typing import Any, Final

import orjson

from agentcast.streams.patch import PatchError, apply_patch

__all__ = ["PIECE_BYTES", "RECORD_BYTES", "OpenRuns"]

PIECE_BYTES: Final = 96
"""Counted per text piece besides its length: its list slots, its seq and its str header
(measured with tracemalloc: about 100 bytes for a 4-character delta)."""
RECORD_BYTES: Final = 1024
"""Counted per run, step, message, tool call, result and state document besides their ids
and text: a record holds its events (measured: a message's record with its start and end
events, about 1 KiB)."""

# the start event's type -> the delta kind and the id field of its stream
_DELTA_OF: Final = {
    "message_start": ("message_delta", "message_id"),
    "tool_call_start": ("tool_call_delta", "tool_call_id"),
}
_ENDS: Final = frozenset({"message_end", "tool_call_end"})


def _by_seq(entry: tuple[dict[str, Any], dict[str, Any] | None]) -> int:
    seq: int = entry[0]["seq"]
    return seq


class _Record:
    """One step, message, tool call or standalone event of a channel, as the snapshot needs
    it: its boundary events with their seqs, and (message, tool call) its text pieces."""

    __slots__ = (
        "boundaries",
        "bytes",
        "first_seq",
        "forgotten",
        "in_run",
        "is_open",
        "last_seq",
        "pieces",
        "seqs",
        "start",
    )

    def __init__(self, event: dict[str, Any], seq: int, size: int, is_open: bool) -> None:
        self.boundaries: list[tuple[int, dict[str, Any]]] = [(seq, event)]
        self.start = event  # kept when a completed record is forgotten
        self.pieces: list[str] = []
        self.seqs: list[int] = []
        self.is_open = is_open
        self.in_run = True
        self.forgotten = False  # completed, and its events dropped to stay in bounds
        self.first_seq = seq
        self.last_seq = seq
        self.bytes = RECORD_BYTES + size

    def close(self, event: dict[str, Any], seq: int) -> None:
        self.boundaries.append((seq, event))
        self.is_open = False
        self.last_seq = seq

    def done(self) -> dict[str, Any]:
        """The completed message or tool call (``OpenRuns.observe`` at its end)."""
        start = self.start
        text = "".join(self.pieces)
        if start["type"] == "tool_call_start":
            return {"tool_call_id": start["tool_call_id"], "name": start["name"], "arguments": text}
        return {
            "message_id": start["message_id"],
            "role": start["role"],
            "kind": start["kind"],
            "content": text,
        }

    def replay(self, since: int, out: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        """Append to ``out`` what a watcher that has every event up to ``since`` lacks, each
        with its item (what ``OpenRuns.observe`` returned for it)."""
        for seq, event in self.boundaries:
            if seq > since:
                out.append(({**event, "seq": seq}, self._item_of(event)))
        seqs = self.seqs
        first = bisect_right(seqs, since)
        if first == len(seqs):
            return
        kind, field = _DELTA_OF[self.start["type"]]
        merged: dict[str, Any] = {"type": kind, field: self.start[field]}
        if first == len(seqs) - 1:
            merged["delta"] = self.pieces[first]
            merged["seq"] = seqs[first]
        else:
            merged["delta"] = "".join(self.pieces[first:])
            merged["seq"] = seqs[-1]
            merged["from_seq"] = seqs[first]
        out.append((merged, self.start))

    def _item_of(self, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event["type"]
        if kind in _ENDS:
            return self.done()
        if kind == "tool_result" and self.start["type"] == "tool_call_start":
            return self.start
        return None


class _Channel:
    """A channel's open run and its loose (outside any run) open messages and tool calls."""

    __slots__ = (
        "bytes",
        "lost_ids",
        "lost_run",
        "messages",
        "records",
        "run",
        "run_seq",
        "state_bytes",
        "state_json",
        "state_seq",
        "steps",
        "tools",
        "used",
    )

    def __init__(self) -> None:
        self.run: dict[str, Any] | None = None
        self.run_seq = 0
        self.records: list[_Record] = []  # the open run's, in order of start
        self.steps: dict[str, _Record] = {}
        self.messages: dict[str, _Record] = {}  # the run's and the loose open ones
        self.tools: dict[str, _Record] = {}
        self.state_json: bytes | None = None
        self.state_seq = 0
        self.state_bytes = 0
        # Lost state: the open run's (until it ends) and loose ids still open (until
        # their end); while either is set a snapshot cannot be made valid.
        self.lost_run = False
        self.lost_ids: set[tuple[bool, str]] = set()  # (is a tool call, id)
        self.bytes = 0
        self.used = 0

    def loose(self) -> list[_Record]:
        return [r for d in (self.messages, self.tools) for r in d.values() if not r.in_run]

    def is_empty(self) -> bool:
        return (
            self.run is None
            and not self.lost_run
            and not self.lost_ids
            and not self.messages
            and not self.tools
        )


class OpenRuns:
    """Per channel: the open run's events and text so far, bounded.

    ``observe`` every event in seq order; ``snapshot`` for a watcher that joins.
    Counters: ``unknown_ids`` (deltas and ends of ids not open, starts of ids already
    open), ``failed_patches`` (state events that did not apply: the document stays as it
    was), ``forgotten_items`` (completed items dropped to keep a run in ``max_run_bytes``),
    ``lost_runs`` (channels whose state still did not fit), ``dropped_channels`` (states
    dropped, least recently used first, to keep all in ``max_total_bytes``).
    """

    def __init__(self, max_run_bytes: int = 8 << 20, max_total_bytes: int = 256 << 20) -> None:
        if max_run_bytes < 1 or max_total_bytes < 1:
            raise ValueError("max_run_bytes and max_total_bytes must be at least 1")
        self.max_run_bytes = max_run_bytes
        self.max_total_bytes = max_total_bytes
        self.total_bytes = 0
        self.unknown_ids = 0
        self.failed_patches = 0
        self.forgotten_items = 0
        self.lost_runs = 0
        self.dropped_channels = 0
        self._channels: dict[Hashable, _Channel] = {}
        self._clock = 0
        self._on = {
            "run_start": self._run_start,
            "run_end": self._run_end,
            "run_error": self._run_end,
            "step_start": self._step_start,
            "step_end": self._step_end,
            "message_start": self._item_start,
            "message_end": self._item_end,
            "message": self._whole,
            "tool_call_start": self._item_start,
            "tool_call_delta": self._tool_call_delta,
            "tool_call_end": self._item_end,
            "tool_result": self._tool_result,
            "state_snapshot": self._state,
            "state_patch": self._state,
        }

    # ---- the loop thread, once per event ---------------------------------------

    def observe(self, channel: Hashable, event: dict[str, Any], seq: int) -> dict[str, Any] | None:
        """Take ``event`` (numbered ``seq``) into ``channel``'s state.

        Returns the event's item, what an encoding needs besides the event: at its end
        the completed item (``message_end``: ``{"message_id", "role", "kind",
        "content"}``, ``tool_call_end``: ``{"tool_call_id", "name", "arguments"}``); for a
        delta its stream's start event, for a ``tool_result`` its call's start event; None
        for every other event and for an id whose start is unknown.
        """
        if event["type"] == "message_delta":  # the hot path, inline
            ch = self._channels.get(channel)
            if ch is not None:
                item = ch.messages.get(event["message_id"])
                if item is not None and item.is_open:
                    piece: str = event["delta"]
                    item.pieces.append(piece)
                    item.seqs.append(seq)
                    size = len(piece) + PIECE_BYTES
                    item.bytes += size
                    ch.bytes += size
                    self.total_bytes += size
                    self._clock += 1
                    ch.used = self._clock
                    if ch.bytes > self.max_run_bytes or self.total_bytes > self.max_total_bytes:
                        self._keep_bounds(ch)
                    return item.start
            self.unknown_ids += 1
            return None
        handler = self._on.get(event["type"])
        return None if handler is None else handler(channel, event, seq)

    def forget(self, channel: Hashable) -> None:
        """Drop ``channel``'s state (the core freed the channel)."""
        ch = self._channels.pop(channel, None)
        if ch is not None:
            self.total_bytes -= ch.bytes

    def open_run(self, channel: Hashable) -> dict[str, Any] | None:
        """The ``run_start`` event of ``channel``'s open run, or None."""
        ch = self._channels.get(channel)
        return None if ch is None else ch.run

    def run_seq(self, channel: Hashable) -> int:
        """The seq of ``channel``'s open run's ``run_start``; 0 when no run is open."""
        ch = self._channels.get(channel)
        return 0 if ch is None or ch.run is None else ch.run_seq

    def snapshot(self, channel: Hashable, since: int = 0) -> list[dict[str, Any]] | None:
        """The events with seq > ``since`` that make ``channel``'s stream valid for a
        watcher that has every event up to ``since`` (0: none), in seq order.

        Each is ``{"type", ...fields, "seq"}``; a merged delta of several pieces also has
        ``from_seq`` (its first piece's seq; ``seq`` is its last's). ``[]`` when nothing is
        open; None when the state needed was dropped to stay in bounds (history trimmed).
        """
        entries = self.snapshot_items(channel, since)
        return None if entries is None else [event for event, _item in entries]

    def snapshot_items(
        self, channel: Hashable, since: int = 0
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]] | None:
        """``snapshot``, each event with its item (as ``observe`` returns it)."""
        ch = self._channels.get(channel)
        if ch is None:
            return []
        if ch.lost_run or ch.lost_ids:
            return None
        out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        if ch.run is not None and ch.run_seq > since:
            out.append(({**ch.run, "seq": ch.run_seq}, None))
        for record in ch.records + ch.loose():
            if not record.forgotten:
                record.replay(since, out)
            elif record.first_seq <= since < record.last_seq:
                return None  # the watcher has its start but not all of the rest
        if ch.state_json is not None and ch.state_seq > since:
            state = {"type": "state_snapshot", "snapshot": orjson.loads(ch.state_json)}
            out.append(({**state, "seq": ch.state_seq}, None))
        out.sort(key=_by_seq)
        return out

    def bytes_of(self, channel: Hashable) -> int:
        """The bytes counted for ``channel`` (0 when it holds no state)."""
        ch = self._channels.get(channel)
        return 0 if ch is None else ch.bytes

    # ---- events -----------------------------------------------------------------

    def _run_start(self, channel: Hashable, event: dict[str, Any], seq: int) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel()
        self._end_run(ch)  # a run_start while one is open replaces it
        ch.run = event
        ch.run_seq = seq
        self._grow(ch, RECORD_BYTES + len(event["run_id"]))

    def _run_end(self, channel: Hashable, event: dict[str, Any], seq: int) -> None:
        ch = self._channels.get(channel)
        if ch is not None:
            self._end_run(ch)
            self._free_if_empty(channel, ch)

    def _step_start(self, channel: Hashable, event: dict[str, Any], seq: int) -> None:
        ch = self._channels.get(channel)
        if ch is None or ch.run is None:
            return
        step = ch.steps.get(event["step"])
        if step is not None and step.is_open:
            self.unknown_ids += 1
            return
        record = ch.steps[event["step"]] = _Record(event, seq, len(event["step"]), True)
        ch.records.append(record)
        self._grow(ch, record.bytes)

    def _step_end(self, channel: Hashable, event: dict[str, Any], seq: int) -> None:
        ch = self._channels.get(channel)
        if ch is None or ch.run is None:
            return
        step = ch.steps.get(event["step"])
        if step is None or not step.is_open:
            self.unknown_ids += 1
            return
        step.close(event, seq)
        self._touch(ch)

    def _item_start(self, channel: Hashable, event: dict[str, Any], seq: int) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel()
        is_tool = event["type"] == "tool_call_start"
        item_id: str = event["tool_call_id" if is_tool else "message_id"]
        items = ch.tools if is_tool else ch.messages
        old = items.get(item_id)
        if (old is not None and old.is_open) or (is_tool, item_id) in ch.lost_ids:
            self.unknown_ids += 1
            return
        if ch.lost_run:  # part of a run whose state is lost: nothing to track
            return
        item = items[item_id] = _Record(event, seq, len(item_id), True)
        item.in_run = ch.run is not None
        if item.in_run:
            ch.records.append(item)
        self._grow(ch, item.bytes)

    def _tool_call_delta(
        self, channel: Hashable, event: dict[str, Any], seq: int
    ) -> dict[str, Any] | None:
        ch = self._channels.get(channel)
        if ch is not None:
            item = ch.tools.get(event["tool_call_id"])
            if item is not None and item.is_open:
                piece: str = event["delta"]
                item.pieces.append(piece)
                item.seqs.append(seq)
                size = len(piece) + PIECE_BYTES
                item.bytes += size
                self._grow(ch, size)
                return item.start
        self.unknown_ids += 1
        return None

    def _item_end(
        self, channel: Hashable, event: dict[str, Any], seq: int
    ) -> dict[str, Any] | None:
        is_tool = event["type"] == "tool_call_end"
        item_id: str = event["tool_call_id" if is_tool else "message_id"]
        ch = self._channels.get(channel)
        if ch is None:
            self.unknown_ids += 1
            return None
        items = ch.tools if is_tool else ch.messages
        item = items.get(item_id)
        if item is None or not item.is_open:
            if (is_tool, item_id) in ch.lost_ids:
                ch.lost_ids.discard((is_tool, item_id))
                self._free_if_empty(channel, ch)
            else:
                self.unknown_ids += 1
            return None
        item.close(event, seq)
        done = item.done()
        if item.in_run:
            self._touch(ch)
        else:  # a loose item is kept only until its end
            del items[item_id]
            ch.bytes -= item.bytes
            self.total_bytes -= item.bytes
            self._free_if_empty(channel, ch)
        return done

    def _whole(self, channel: Hashable, event: dict[str, Any], seq: int) -> None:
        ch = self._channels.get(channel)
        if ch is None or ch.run is None:
            return
        record = _Record(event, seq, len(event["message_id"]) + len(event["content"]), False)
        ch.records.append(record)
        self._grow(ch, record.bytes)

    def _tool_result(
        self, channel: Hashable, event: dict[str, Any], seq: int
    ) -> dict[str, Any] | None:
        ch = self._channels.get(channel)
        if ch is None:
            return None
        call = ch.tools.get(event["tool_call_id"])
        if ch.run is None:
            return None if call is None else call.start
        if call is None or not call.in_run:  # a result on its own
            record = _Record(event, seq, len(event["content"]), False)
            ch.records.append(record)
            self._grow(ch, record.bytes)
        elif call.forgotten:
            call.last_seq = seq
        else:
            call.boundaries.append((seq, event))
            call.last_seq = seq
            size = RECORD_BYTES + len(event["content"])
            call.bytes += size
            self._grow(ch, size)
        return None if call is None else call.start

    def _state(self, channel: Hashable, event: dict[str, Any], seq: int) -> None:
        ch = self._channels.get(channel)
        if ch is None or ch.run is None:
            return
        try:
            if event["type"] == "state_snapshot":
                doc = event["snapshot"]
            else:  # patches before any snapshot apply to {} (AG-UI's initial state)
                doc = {} if ch.state_json is None else orjson.loads(ch.state_json)
                doc = apply_patch(doc, event["patch"])
            data = orjson.dumps(doc)
        except (PatchError, TypeError, RecursionError):  # orjson's errors are TypeErrors
            self.failed_patches += 1
            return
        ch.state_json = data
        ch.state_seq = seq
        size = RECORD_BYTES + len(data)
        grown, ch.state_bytes = size - ch.state_bytes, size
        self._grow(ch, grown)

    # ---- bounds -----------------------------------------------------------------

    def _touch(self, ch: _Channel) -> None:
        self._clock += 1
        ch.used = self._clock

    def _grow(self, ch: _Channel, size: int) -> None:
        """Count ``size`` more bytes for ``ch``, then keep the bounds."""
        self._clock += 1
        ch.used = self._clock
        ch.bytes += size
        self.total_bytes += size
        self._keep_bounds(ch)

    def _keep_bounds(self, ch: _Channel) -> None:
        if ch.bytes > self.max_run_bytes:
            self._fit_run(ch)
        if self.total_bytes > self.max_total_bytes:
            self._drop_least_recent()

    def _fit_run(self, ch: _Channel) -> None:
        """Forget completed items of the run, oldest first; lose the state if not enough."""
        for record in ch.records:
            if ch.bytes <= self.max_run_bytes:
                return
            if record.is_open or record.forgotten:
                continue
            freed = record.bytes - RECORD_BYTES
            record.boundaries = []
            record.pieces = []
            record.seqs = []
            record.forgotten = True
            record.bytes = RECORD_BYTES
            ch.bytes -= freed
            self.total_bytes -= freed
            self.forgotten_items += 1
        if ch.bytes > self.max_run_bytes:
            self._lose(ch)
            self.lost_runs += 1

    def _drop_least_recent(self) -> None:
        by_use = sorted((key for key, ch in self._channels.items() if ch.bytes), key=self._used)
        for key in by_use:
            if self.total_bytes <= self.max_total_bytes:
                return
            ch = self._channels[key]
            self._lose(ch)
            self.dropped_channels += 1
            self._free_if_empty(key, ch)

    def _used(self, channel: Hashable) -> int:
        return self._channels[channel].used

    def _lose(self, ch: _Channel) -> None:
        """Drop all of ``ch``'s state, remembering what was open, so that a snapshot says
        None (not an invalid stream) until it has ended."""
        lost_run = ch.lost_run or ch.run is not None
        ch.lost_ids.update((True, i) for i, r in ch.tools.items() if not r.in_run)
        ch.lost_ids.update((False, i) for i, r in ch.messages.items() if not r.in_run)
        ch.messages.clear()
        ch.tools.clear()
        self._end_run(ch)
        ch.lost_run = lost_run

    def _end_run(self, ch: _Channel) -> None:
        """Drop the run's state (its records, steps, state document); loose items stay."""
        ch.run = None
        ch.run_seq = 0
        ch.records = []
        ch.steps = {}
        ch.state_json = None
        ch.state_seq = 0
        ch.state_bytes = 0
        ch.lost_run = False
        ch.messages = {i: r for i, r in ch.messages.items() if not r.in_run}
        ch.tools = {i: r for i, r in ch.tools.items() if not r.in_run}
        kept = sum(r.bytes for r in ch.loose())
        self.total_bytes -= ch.bytes - kept
        ch.bytes = kept

    def _free_if_empty(self, channel: Hashable, ch: _Channel) -> None:
        if ch.is_empty():
            del self._channels[channel]
