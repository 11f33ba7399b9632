"""C contract of a channel: its seq counter and its bounded history of built frames."""


cdef class HistoryLedger:
    cdef Py_ssize_t bytes                         # every channel's history together


cdef class Channel:
    cdef readonly object name
    cdef readonly unsigned long long last_seq
    cdef readonly unsigned long long first_seq    # seq of history[0]
    cdef list ring                                # built frames; ring[head] has first_seq
    cdef Py_ssize_t head
    cdef Py_ssize_t count
    cdef Py_ssize_t history_bytes
    cdef Py_ssize_t max_frames
    cdef Py_ssize_t max_bytes
    cdef HistoryLedger ledger
    cdef readonly unsigned long long used_tick    # last tick that stamped, kept, (un)subscribed

    cdef unsigned long long tick_base             # last_seq when this tick began
    cdef unsigned long long stamped_tick
    cdef bint started                             # accepted a backplane frame

    cdef unsigned long long seq_before(self, unsigned long long tick) noexcept
    cdef bytes stamp(self, bytes payload, unsigned long long tick)
    cdef void _note_tick(self, unsigned long long tick) noexcept
    cdef int keep(self, unsigned long long seq, bytes frame, unsigned long long tick) except -1
    cdef int restart(self, unsigned long long last_seq) except -1
    cdef int trim(self, Py_ssize_t max_bytes) except -1
    cdef int _remember(self, bytes frame) except -1
    cdef int _grow(self) except -1
    cdef void _forget_oldest(self) noexcept
    cdef list frames_after(self, unsigned long long since, unsigned long long upto)
