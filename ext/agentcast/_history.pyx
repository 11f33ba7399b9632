# cython: language_level=3
"""The channel table: per channel, the seq counter and the bounded history a resume replays
from; for all of them, the bounds (how many, how long idle, how many bytes of history)."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from agentcast._buffer cimport MAX_HEADER, TEXT_FRAME, write_decimal, write_header
from agentcast._frames cimport EventFrames

from operator import attrgetter

cdef enum:
    MAX_SEQ_SUFFIX = 32

cdef list NO_FRAMES = []  # every new channel's ring until its first frame: never written to


cdef inline Py_ssize_t entry_size(object entry) noexcept:
    """Bytes a history entry is counted for: one frame, or an event's frames (those built
    when it was kept: what is built later is not counted, nor uncounted)."""
    if type(entry) is bytes:
        return PyBytes_GET_SIZE(<bytes>entry)
    return (<EventFrames>entry).kept


cdef object LEAST_RECENTLY_USED = attrgetter("used_tick")


cdef class Channel:
    """A channel's sequence counter and its bounded history of built frames.

    The history is a ring over a list (slot ``head`` holds seq ``first_seq``):
    a frame is kept with two pointer stores, no Python method call. The ring
    doubles up to the table's ``max_frames`` as needed, so a quiet channel stays small (one
    that never kept a frame has no ring of its own).
    """

    def __cinit__(self, object name, ChannelTable table not None):
        self.name = name
        self.table = table
        self.ring = NO_FRAMES
        self.first_seq = 1

    cdef unsigned long long seq_before(self, unsigned long long tick) noexcept:
        """The last seq stamped before tick ``tick`` began."""
        return self.tick_base if self.stamped_tick == tick else self.last_seq

    cdef bytes stamp(self, bytes payload, unsigned long long tick):
        """Next seq, and the frame carrying it: ``,"seq":N`` goes before a JSON object's ``}``."""
        cdef char suffix[MAX_SEQ_SUFFIX]
        cdef unsigned char header[MAX_HEADER]
        cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
        cdef const char* data = PyBytes_AS_STRING(payload)
        cdef Py_ssize_t extra = 0, body, hl
        cdef bytes frame
        cdef char* out
        self._note_tick(tick)
        self.last_seq += 1
        body = size
        if size >= 2 and data[0] == b'{' and data[size - 1] == b'}':
            if size > 2:
                suffix[0] = b','
                extra = 1
            memcpy(suffix + extra, b'"seq":', 6)
            extra += 6
            extra += write_decimal(suffix + extra, self.last_seq)
            suffix[extra] = b'}'
            extra += 1
            body = size - 1 + extra
        hl = write_header(header, body, TEXT_FRAME)
        frame = PyBytes_FromStringAndSize(NULL, hl + body)
        out = PyBytes_AS_STRING(frame)
        memcpy(out, header, hl)
        if extra:
            memcpy(out + hl, data, size - 1)
            memcpy(out + hl + size - 1, suffix, extra)
        else:
            memcpy(out + hl, data, size)
        self._remember(frame)
        return frame

    cdef void _note_tick(self, unsigned long long tick) noexcept:
        if self.stamped_tick != tick:
            self.stamped_tick = tick
            self.tick_base = self.last_seq
            self.used_tick = tick
            if self.idle:  # a busy channel is in no list: nothing to move
                self.table.touch(self, tick)

    cdef int keep(self, unsigned long long seq, object entry, unsigned long long tick) except -1:
        """Keep a frame (or an event's ``EventFrames``) numbered here or elsewhere: ``seq``
        must be ``last_seq + 1``."""
        self._note_tick(tick)
        self.last_seq = seq
        self._remember(entry)
        return 0

    cdef int restart(self, unsigned long long last_seq) except -1:
        """Forget the history; the next frame kept will be ``last_seq + 1``."""
        cdef Py_ssize_t i
        for i in range(len(self.ring)):
            self.ring[i] = None
        self.table.bytes -= self.history_bytes
        self.head = self.count = self.history_bytes = 0
        self.last_seq = self.tick_base = last_seq
        self.first_seq = last_seq + 1
        return 0

    cdef int _remember(self, object entry) except -1:
        cdef Py_ssize_t slot, size
        if self.table.max_frames <= 0:
            self.first_seq = self.last_seq + 1
            return 0
        if self.count == len(self.ring):
            if self.count < self.table.max_frames:
                self._grow()
            else:
                self._forget_oldest()
        slot = self.head + self.count
        if slot >= len(self.ring):
            slot -= len(self.ring)
        size = entry_size(entry)
        self.ring[slot] = entry
        self.count += 1
        self.history_bytes += size
        self.table.bytes += size
        return self.trim(self.table.max_bytes)

    cdef int trim(self, Py_ssize_t max_bytes) except -1:
        """Forget the oldest frames until at most ``max_bytes`` are kept."""
        while self.count and self.history_bytes > max_bytes:
            self._forget_oldest()
        return 0

    cdef int _grow(self) except -1:
        cdef list frames = self.frames_after(self.first_seq - 1, self.last_seq)
        cdef Py_ssize_t capacity = min(self.table.max_frames, max(16, 2 * len(self.ring)))
        self.ring = frames + [None] * (capacity - len(frames))
        self.head = 0
        return 0

    cdef void _forget_oldest(self) noexcept:
        cdef Py_ssize_t size = entry_size(self.ring[self.head])
        self.history_bytes -= size
        self.table.bytes -= size
        self.ring[self.head] = None
        self.head += 1
        if self.head == len(self.ring):
            self.head = 0
        self.count -= 1
        self.first_seq += 1

    cdef list frames_after(self, unsigned long long since, unsigned long long upto):
        """Kept entries with ``since`` < seq <= ``upto``, oldest first: a frame (bytes), or an
        event's ``EventFrames``."""
        cdef Py_ssize_t start = 0, end = self.count, i, slot
        cdef list frames = []
        if since + 1 > self.first_seq:
            start = <Py_ssize_t>(since + 1 - self.first_seq)
        if upto + 1 < self.first_seq + <unsigned long long>self.count:
            end = <Py_ssize_t>(upto + 1 - self.first_seq) if upto + 1 > self.first_seq else 0
        for i in range(start, end):
            slot = self.head + i
            if slot >= len(self.ring):
                slot -= len(self.ring)
            frames.append(self.ring[slot])
        return frames

    def info(self):
        return {"last_seq": self.last_seq, "first_seq": self.first_seq,
                "frames": self.count, "bytes": self.history_bytes}


cdef class ChannelTable:
    """Every channel of one core, at most ``max_channels`` of them.

    A channel with subscribers is *busy*; the others are *idle* and sit in a
    doubly linked list, least recently used first (a use moves one to the end:
    a few pointer stores, once per tick at most). A new channel beyond
    ``max_channels`` evicts the least recently used idle one, and is refused when
    every channel is busy. A sweep frees idle channels from the old end and
    stops at the first one used after its cutoff, so its work is what it frees.
    """

    def __cinit__(self, Py_ssize_t max_channels, Py_ssize_t max_frames,
                  Py_ssize_t max_bytes, dict pinned not None):
        self.channels = {}
        self.max_channels = max_channels
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.pinned = pinned

    def __len__(self):
        return len(self.channels)

    cdef Channel open(self, object name, unsigned long long tick):
        """The channel ``name``, made if new (as idle, used now); None if it is new and the
        table is full of busy channels (or of idle ones with a subscribe on its way)."""
        cdef Channel channel = self.channels.get(name)
        cdef Channel oldest
        if channel is not None:
            return channel
        oldest = self.oldest
        while len(self.channels) >= self.max_channels:
            while oldest is not None and oldest.name in self.pinned:
                oldest = oldest.newer
            if oldest is None:
                self.refused += 1
                return None
            channel, oldest = oldest, oldest.newer
            self.forget(channel)
            self.evicted += 1
        channel = Channel(name, self)
        self.channels[name] = channel
        channel.idle = True
        self._append_idle(channel)
        channel.used_tick = tick
        return channel

    cdef void touch(self, Channel channel, unsigned long long tick) noexcept:
        """``channel`` was used in ``tick``: an idle one moves to the recent end."""
        channel.used_tick = tick
        if channel.idle and channel is not self.newest:
            self._remove_idle(channel)
            self._append_idle(channel)

    cdef int set_busy(self, object name, bint busy, unsigned long long tick) except -1:
        """Its first subscriber came (``busy``) or its last one left: its idle time starts."""
        cdef Channel channel = self.channels.get(name)
        if channel is None or channel.idle == (not busy):  # no change
            return 0
        channel.idle = not busy
        if busy:
            self._remove_idle(channel)
        else:
            self._append_idle(channel)
            channel.used_tick = tick
        return 0

    cdef int forget(self, Channel channel) except -1:
        """Free ``channel`` with its history (its seq starts again at 1 if it comes back)."""
        del self.channels[channel.name]
        if channel.idle:
            self._remove_idle(channel)
            channel.idle = False
        return channel.trim(0)

    cdef Py_ssize_t sweep(self, unsigned long long cutoff, Py_ssize_t limit) except -1:
        """Free idle channels last used at tick ``cutoff`` or before, at most ``limit`` of them
        (a subscribe on its way keeps one); returns how many were freed."""
        cdef Channel channel = self.oldest, older
        cdef Py_ssize_t freed = 0, steps = 0
        while channel is not None and channel.used_tick <= cutoff and steps < limit:
            older, channel = channel, channel.newer
            steps += 1
            if older.name not in self.pinned:
                self.forget(older)
                freed += 1
        self.freed += freed
        return freed

    cdef int trim_history(self, Py_ssize_t target) except -1:
        """Forget the oldest history of the least recently used channels until all of them
        hold at most ``target`` bytes (sorts the channels: rare, not per message)."""
        cdef Channel channel
        for channel in sorted(self.channels.values(), key=LEAST_RECENTLY_USED):
            if self.bytes <= target:
                break
            channel.trim(max(0, channel.history_bytes - (self.bytes - target)))
        return 0

    cdef void _append_idle(self, Channel channel) noexcept:
        channel.older = self.newest
        channel.newer = None
        if self.newest is None:
            self.oldest = channel
        else:
            self.newest.newer = channel
        self.newest = channel

    cdef void _remove_idle(self, Channel channel) noexcept:
        if channel.older is None:
            self.oldest = channel.newer
        else:
            channel.older.newer = channel.newer
        if channel.newer is None:
            self.newest = channel.older
        else:
            channel.newer.older = channel.older
        channel.older = channel.newer = None

    def info(self, object name):
        """seq and history of one channel, or None if there is no such channel."""
        cdef Channel channel = self.channels.get(name)
        return None if channel is None else channel.info()
