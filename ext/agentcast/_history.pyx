# cython: language_level=3
"""Per-channel state: the seq counter and the bounded history a resume replays from."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from agentcast._buffer cimport MAX_HEADER, TEXT_FRAME, write_decimal, write_header

cdef enum:
    MAX_SEQ_SUFFIX = 32


cdef class HistoryLedger:
    """The bytes of history every channel of one core holds together (kept by the channels)."""


cdef class Channel:
    """A channel's sequence counter and its bounded history of built frames.

    The history is a ring over a list (slot ``head`` holds seq ``first_seq``):
    a frame is kept with two pointer stores, no Python method call. The ring
    doubles up to ``max_frames`` as needed, so a quiet channel stays small.
    """

    def __cinit__(self, object name, Py_ssize_t max_frames, Py_ssize_t max_bytes,
                  HistoryLedger ledger not None):
        self.name = name
        self.ledger = ledger
        self.ring = []
        self.first_seq = 1
        self.max_frames = max_frames
        self.max_bytes = max_bytes

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
        self.used_tick = tick
        if self.stamped_tick != tick:
            self.stamped_tick = tick
            self.tick_base = self.last_seq

    cdef int keep(self, unsigned long long seq, bytes frame, unsigned long long tick) except -1:
        """Keep a frame numbered elsewhere (a backplane): ``seq`` must be ``last_seq + 1``."""
        self._note_tick(tick)
        self.last_seq = seq
        self._remember(frame)
        return 0

    cdef int restart(self, unsigned long long last_seq) except -1:
        """Forget the history; the next frame kept will be ``last_seq + 1``."""
        cdef Py_ssize_t i
        for i in range(len(self.ring)):
            self.ring[i] = None
        self.ledger.bytes -= self.history_bytes
        self.head = self.count = self.history_bytes = 0
        self.last_seq = self.tick_base = last_seq
        self.first_seq = last_seq + 1
        return 0

    cdef int _remember(self, bytes frame) except -1:
        cdef Py_ssize_t slot
        if self.max_frames <= 0:
            self.first_seq = self.last_seq + 1
            return 0
        if self.count == len(self.ring):
            if self.count < self.max_frames:
                self._grow()
            else:
                self._forget_oldest()
        slot = self.head + self.count
        if slot >= len(self.ring):
            slot -= len(self.ring)
        self.ring[slot] = frame
        self.count += 1
        self.history_bytes += PyBytes_GET_SIZE(frame)
        self.ledger.bytes += PyBytes_GET_SIZE(frame)
        return self.trim(self.max_bytes)

    cdef int trim(self, Py_ssize_t max_bytes) except -1:
        """Forget the oldest frames until at most ``max_bytes`` are kept."""
        while self.count and self.history_bytes > max_bytes:
            self._forget_oldest()
        return 0

    cdef int _grow(self) except -1:
        cdef list frames = self.frames_after(self.first_seq - 1, self.last_seq)
        cdef Py_ssize_t capacity = min(self.max_frames, max(16, 2 * len(self.ring)))
        self.ring = frames + [None] * (capacity - len(frames))
        self.head = 0
        return 0

    cdef void _forget_oldest(self) noexcept:
        cdef Py_ssize_t size = PyBytes_GET_SIZE(<bytes>self.ring[self.head])
        self.history_bytes -= size
        self.ledger.bytes -= size
        self.ring[self.head] = None
        self.head += 1
        if self.head == len(self.ring):
            self.head = 0
        self.count -= 1
        self.first_seq += 1

    cdef list frames_after(self, unsigned long long since, unsigned long long upto):
        """Kept frames with ``since`` < seq <= ``upto``, oldest first."""
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
