"""The oracle: a plain-Python fan-out with the semantics the Cython core must have.

Each client's byte stream is the frames of every operation addressed to it,
in queue order: broadcasts, messages of channels it was subscribed to at that
point of the queue, direct messages, and a resume's replay of what it does not hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Any

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
    def __init__(
        self, client_ids: list[int], history_size: int = 1000, history_bytes: int = 1 << 62
    ) -> None:
        self.channels: dict[int, set[Hashable]] = {cid: set() for cid in client_ids}
        # client -> channel -> first seq of the unbroken run it holds up to now
        self.live_from: dict[int, dict[Hashable, int]] = {cid: {} for cid in client_ids}
        self.streams: dict[int, bytearray] = {cid: bytearray() for cid in client_ids}
        self.history: dict[Hashable, list[tuple[int, bytes]]] = {}
        self.last_seq: dict[Hashable, int] = {}
        self.history_size = history_size
        self.history_bytes = history_bytes  # a channel's kept frames, headers included

    def publish(self, payload: bytes, channel: Hashable | None = None) -> None:
        if channel is not None:
            seq = self.last_seq[channel] = self.last_seq.get(channel, 0) + 1
            payload = stamp(payload, seq)
            self._keep(channel, seq, payload)
        self._fan(channel, frame(payload))

    def _keep(self, channel: Hashable, seq: int, payload: bytes) -> None:
        kept = self.history.setdefault(channel, [])
        kept.append((seq, payload))
        del kept[: max(0, len(kept) - self.history_size)]
        while kept and sum(len(frame(p)) for _, p in kept) > self.history_bytes:
            del kept[0]

    def _fan(self, channel: Hashable | None, data: bytes) -> None:
        for cid, channels in self.channels.items():
            if channel is None or channel in channels:
                self._deliver(cid, data, "channel")

    def _deliver(self, client_id: int, data: bytes, kind: str) -> None:
        """``kind``: "channel" (a broadcast or a channel's frame), "replay", or "direct"."""
        self.streams[client_id] += data

    def resume(self, client_id: int, channel: Hashable, since: int) -> list[int]:
        """Subscribe and replay after ``since`` what the client does not hold yet (a gap
        notice first if that is gone, or if ``since`` is ahead of the channel)."""
        if not self._subscribe(client_id, channel):
            return []
        return self._replay(client_id, channel, since)

    def _replay(self, client_id: int, channel: Hashable, since: int) -> list[int]:
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
            self._deliver(client_id, frame(payload), "replay")
        self.live_from[client_id][channel] = since + 1
        self._replayed(client_id, channel, since)
        return [seq for seq, _ in replay]

    def _replayed(self, client_id: int, channel: Hashable, since: int) -> None:
        """The client holds ``channel`` from ``since + 1`` on now."""

    def _gap_notice(
        self, client_id: int, channel: Hashable, since: int, first: int, last: int
    ) -> int:
        notice = notices.resume_gap(channel, since, first, last)
        self._deliver(client_id, frame(notice), "direct")
        return first - 1

    def send(self, client_id: int, payload: bytes) -> None:
        self._deliver(client_id, frame(payload), "direct")

    def subscribe(self, client_id: int, channel: Hashable) -> None:
        self._subscribe(client_id, channel)

    def _subscribe(self, client_id: int, channel: Hashable) -> bool:
        """Subscribe; False if refused."""
        if channel not in self.channels[client_id]:
            self.channels[client_id].add(channel)
            self.live_from[client_id][channel] = self.last_seq.get(channel, 0) + 1
        return True

    def unsubscribe(self, client_id: int, channel: Hashable) -> None:
        self.channels[client_id].discard(channel)
        self.live_from[client_id].pop(channel, None)


class Record:
    """What the core's channel table keeps of one channel besides its seq and history."""

    def __init__(self, tick: int) -> None:
        self.used_tick = tick
        self.stamped_tick = 0  # the last tick that numbered or kept a frame
        self.tick_base = 0  # last_seq when that tick began


class Skip:
    """A slow client's skip: where it stopped getting each channel, what it missed."""

    def __init__(self) -> None:
        self.from_seq: dict[Hashable, int] = {}
        self.frames = 0
        self.direct_bytes = 0


class TickedReference(ReferenceFanout):
    """The oracle tick by tick, for what ticks decide: the slow-consumer policy (a client's
    backlog is looked at when it is written to), the channel table (``max_channels``, least
    recently used idle channels evicted first, sweeps of idle channels) and frames numbered
    by a backplane (``accept``, ``renumber``, ``forget``).

    Operations queue as in the core; ``tick(backlogs)`` applies all of them (the test's
    ``max_batch_bytes`` is never reached), then writes each client's frames of the tick.
    """

    def __init__(
        self,
        client_ids: list[int],
        history_size: int,
        history_bytes: int,
        *,
        max_channels: int,
        budget: int,
        skip: bool,
        channel_ttl: float,
    ) -> None:
        super().__init__(client_ids, history_size, history_bytes)
        self.max_channels, self.budget, self.skip, self.ttl = (
            max_channels,
            budget,
            skip,
            channel_ttl,
        )
        self.queue: list[tuple[Any, tuple[Any, ...]]] = []
        self.ticks = 0
        self.records: dict[Hashable, Record] = {}
        self.idle: dict[Hashable, None] = {}  # least recently used first
        self.pinned: Counter[Hashable] = Counter()  # subscribes queued, not applied
        self.sweeps: list[tuple[float, int]] = []
        self.skipping: dict[int, Skip] = {}
        self.closed: set[int] = set()
        self.round: dict[int, list[tuple[str, bytes]]] = {cid: [] for cid in client_ids}
        self.diverged: set[int] = set()
        self.tick_bytes = False
        self.counts = Counter[str]()

    # ---- queued, as the core's calls are ------------------------------------------

    def publish(self, payload: bytes, channel: Hashable | None = None) -> None:
        self.queue.append((self._publish, (payload, channel)))

    def send(self, client_id: int, payload: bytes) -> None:
        self.queue.append((self._direct, (client_id, frame(payload))))

    def subscribe(self, client_id: int, channel: Hashable, ack: bytes | None = None) -> None:
        self.pinned[channel] += 1
        self.queue.append((self._apply_subscribe, (client_id, channel, ack)))

    def unsubscribe(self, client_id: int, channel: Hashable) -> None:
        self.queue.append((self._unsubscribe, (client_id, channel)))

    def resume(  # type: ignore[override]
        self, client_id: int, channel: Hashable, since: int, ack: bytes | None = None
    ) -> None:
        self.pinned[channel] += 1
        self.queue.append((self._apply_resume, (client_id, channel, since, ack)))

    def accept(self, channel: Hashable, frames: list[tuple[int, bytes]]) -> None:
        self.queue.append((self._accept, (channel, frames)))

    def renumber(self, channel: Hashable) -> None:
        self.queue.append((self._renumber, (channel,)))

    def forget(self, channel: Hashable) -> None:
        self.queue.append((self._forget_idle, (channel,)))

    # ---- not queued ---------------------------------------------------------------

    def sweep(self, now: float, limit: int) -> int:
        """``FanoutCore.sweep_idle``: frees idle channels last used before the sweep that
        ran ``channel_ttl`` ago, least recently used first, looking at ``limit`` at most."""
        self.sweeps.append((now, self.ticks))
        horizon, i = now - self.ttl, 0
        while i + 1 < len(self.sweeps) and self.sweeps[i + 1][0] <= horizon:
            i += 1
        if self.sweeps[i][0] > horizon:
            return 0
        cutoff = self.sweeps[i][1]
        del self.sweeps[:i]
        freed = 0
        for steps, name in enumerate(list(self.idle)):
            if steps >= limit or self.records[name].used_tick > cutoff:
                break
            if not self.pinned[name]:
                self._forget(name)
                freed += 1
        self.counts["freed_channels"] += freed
        return freed

    def tick(self, backlogs: dict[int, int]) -> None:
        self.ticks += 1
        queue, self.queue = self.queue, []
        for apply, args in queue:
            apply(*args)
        for cid in self.round:
            self._write(cid, backlogs[cid])
            self.round[cid] = []
        self.diverged.clear()
        self.tick_bytes = False

    # ---- applied in a tick ----------------------------------------------------------

    def _deliver(self, client_id: int, data: bytes, kind: str) -> None:
        if kind == "channel":
            self.tick_bytes = True  # its group's buffer gets it, whoever reads it
        if client_id in self.closed:
            return
        if kind == "replay" and client_id in self.skipping:
            self._count_skipped(client_id, 1)
            return
        if kind == "direct":
            self.tick_bytes = True
            self.diverged.add(client_id)
        self.round[client_id].append((kind, data))

    def _direct(self, client_id: int, data: bytes) -> None:
        self._deliver(client_id, data, "direct")

    def _publish(self, payload: bytes, channel: Hashable | None) -> None:
        if channel is not None:
            if not self._open(channel):
                return  # every channel busy: it has no subscriber, and nothing is kept
            self._note_tick(channel)
        super().publish(payload, channel)

    def _apply_subscribe(self, client_id: int, channel: Hashable, ack: bytes | None) -> None:
        self.pinned[channel] -= 1
        if self._subscribe(client_id, channel) and ack is not None:
            self._direct(client_id, frame(ack))

    def _apply_resume(
        self, client_id: int, channel: Hashable, since: int, ack: bytes | None
    ) -> None:
        self.pinned[channel] -= 1
        if client_id in self.closed or not self._subscribe(client_id, channel):
            return
        if ack is not None:
            self._direct(client_id, frame(ack))
        self._replay(client_id, channel, since)

    def _replayed(self, client_id: int, channel: Hashable, since: int) -> None:
        skip = self.skipping.get(client_id)
        if skip is not None:
            skip.from_seq[channel] = min(skip.from_seq[channel], since + 1)

    def _subscribe(self, client_id: int, channel: Hashable) -> bool:
        if channel in self.channels[client_id]:
            return True
        if not self._open(channel):
            self._direct(client_id, frame(notices.too_many_channels(channel, self.max_channels)))
            return False
        if self.tick_bytes:  # moved to another group mid-tick: its bytes so far go private
            self.diverged.add(client_id)
        if not self._subscribers(channel):
            del self.idle[channel]
        super()._subscribe(client_id, channel)
        skip = self.skipping.get(client_id)
        if skip is not None:
            skip.from_seq[channel] = self.live_from[client_id][channel]
        return True

    def _unsubscribe(self, client_id: int, channel: Hashable) -> None:
        if channel not in self.channels[client_id]:
            return
        if self.tick_bytes:
            self.diverged.add(client_id)
        super().unsubscribe(client_id, channel)
        if client_id in self.skipping:
            self.skipping[client_id].from_seq.pop(channel, None)
        if not self._subscribers(channel):  # its idle time starts now
            self.idle[channel] = None
            self.records[channel].used_tick = self.ticks

    def _accept(self, channel: Hashable, frames: list[tuple[int, bytes]]) -> None:
        if not self._open(channel):
            return
        for seq, payload in frames:
            last = self.last_seq.get(channel, 0)
            if last == 0:  # new or renumbered: it starts where the backplane is
                self._restart(channel, seq - 1)
            elif seq <= last:
                self.counts["duplicates"] += 1
                continue
            elif seq != last + 1:
                self._restart(channel, seq - 1)
                self._fan(channel, frame(notices.backplane_gap(channel, last + 1, seq - 1)))
            self._note_tick(channel)
            self.last_seq[channel] = seq
            self._keep(channel, seq, payload)
            self._fan(channel, frame(payload))

    def _renumber(self, channel: Hashable) -> None:
        if channel not in self.records:
            return
        notice = frame(notices.channel_restarted(channel, self.last_seq.get(channel, 0)))
        self._restart(channel, 0)
        for cid, channels in self.channels.items():
            if channel in channels:
                self.live_from[cid][channel] = 1
                if cid in self.skipping:
                    self.skipping[cid].from_seq[channel] = 1
        self._fan(channel, notice)

    def _forget_idle(self, channel: Hashable) -> None:
        """``FanoutCore.forget``: freed as a sweep frees it, if idle and not awaited."""
        if channel in self.idle and not self.pinned[channel]:
            self._forget(channel)
            self.counts["freed_channels"] += 1

    # ---- the channel table ------------------------------------------------------------

    def _subscribers(self, channel: Hashable) -> int:
        return sum(channel in channels for channels in self.channels.values())

    def _open(self, channel: Hashable) -> bool:
        if channel in self.records:
            return True
        while len(self.records) >= self.max_channels:
            victim = next((name for name in self.idle if not self.pinned[name]), None)
            if victim is None:
                self.counts["refused_channels"] += 1
                return False
            self._forget(victim)
            self.counts["evicted_channels"] += 1
        self.records[channel] = Record(self.ticks)
        self.idle[channel] = None
        return True

    def _forget(self, channel: Hashable) -> None:
        del self.records[channel], self.idle[channel]
        self.last_seq.pop(channel, None)
        self.history.pop(channel, None)

    def _note_tick(self, channel: Hashable) -> None:
        """The channel numbers or keeps a frame in this tick: it counts as used."""
        record = self.records[channel]
        if record.stamped_tick != self.ticks:
            record.stamped_tick = self.ticks
            record.tick_base = self.last_seq.get(channel, 0)
            record.used_tick = self.ticks
            if channel in self.idle:
                del self.idle[channel]
                self.idle[channel] = None

    def _restart(self, channel: Hashable, last_seq: int) -> None:
        self.history[channel] = []
        self.last_seq[channel] = self.records[channel].tick_base = last_seq

    # ---- the write round: the slow-consumer policy --------------------------------------

    def _count_skipped(self, client_id: int, frames: int) -> None:
        self.skipping[client_id].frames += frames
        self.counts["skipped_frames"] += frames

    def _write(self, cid: int, backlog: int) -> None:
        items = self.round[cid]
        skip = self.skipping.get(cid)
        if cid in self.closed or not items:
            return
        if skip is None:  # written, then its backlog is looked at
            self.streams[cid] += b"".join(data for _, data in items)
            if backlog > self.budget:
                self._over_budget(cid)
            return
        direct = [data for kind, data in items if kind == "direct"]
        if cid in self.diverged:  # only its direct frames are sent; the others are skipped
            self._count_skipped(cid, len(items) - len(direct))
            if not direct:
                return
            items = [("direct", data) for data in direct]
        if backlog > self.budget // 2:  # still behind
            if cid not in self.diverged:
                self._count_skipped(cid, len(items))
                return
            skip.direct_bytes += sum(len(data) for data in direct)
            if skip.direct_bytes > self.budget:
                self._close(cid)
                return
        else:
            self._end_skip(cid, this_tick=cid in self.diverged)
        self.streams[cid] += b"".join(data for _, data in items)

    def _over_budget(self, cid: int) -> None:
        if not self.skip:
            self._close(cid)
            return
        skip = self.skipping[cid] = Skip()
        for channel in self.channels[cid]:
            skip.from_seq[channel] = self.last_seq.get(channel, 0) + 1
        self.counts["skip_episodes"] += 1

    def _close(self, cid: int) -> None:
        self.closed.add(cid)
        self.counts["dropped_clients"] += 1

    def _end_skip(self, cid: int, this_tick: bool) -> None:
        skip = self.skipping.pop(cid)
        ranges = []
        for channel, first in skip.from_seq.items():
            record = self.records[channel]
            last = self.last_seq.get(channel, 0)
            if not this_tick and record.stamped_tick == self.ticks:
                last = record.tick_base
            if last >= first:
                ranges.append((channel, first, last))
                self.live_from[cid][channel] = last + 1
        self.streams[cid] += frame(notices.skipped(skip.frames, ranges))
