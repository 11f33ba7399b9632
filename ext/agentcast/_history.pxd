"""C contract of the channel table: each channel's seq counter and bounded history of built
frames, and the table's bounds (count, idle time, bytes) with its least-recently-used order."""


cdef class Channel:
    cdef readonly object name
    cdef readonly unsigned long long last_seq
    cdef readonly unsigned long long first_seq    # seq of history[0]
    cdef list ring                                # built frames (an event's: EventFrames)
    cdef Py_ssize_t head
    cdef Py_ssize_t count
    cdef Py_ssize_t history_bytes
    cdef ChannelTable table
    cdef readonly unsigned long long used_tick    # last tick that stamped, kept, (un)subscribed
    cdef readonly bint idle                       # no subscriber: in the table's idle list
    cdef Channel older, newer                     # neighbours in the idle list

    cdef unsigned long long tick_base             # last_seq when this tick began
    cdef unsigned long long stamped_tick

    cdef unsigned long long seq_before(self, unsigned long long tick) noexcept
    cdef bytes stamp(self, bytes payload, unsigned long long tick)
    cdef void _note_tick(self, unsigned long long tick) noexcept
    cdef int keep(self, unsigned long long seq, object entry, unsigned long long tick) except -1
    cdef int restart(self, unsigned long long last_seq) except -1
    cdef int trim(self, Py_ssize_t max_bytes) except -1
    cdef int _remember(self, object entry) except -1
    cdef int _grow(self) except -1
    cdef void _forget_oldest(self) noexcept
    cdef list frames_after(self, unsigned long long since, unsigned long long upto)


cdef class ChannelTable:
    cdef dict channels                            # name -> Channel
    cdef readonly Py_ssize_t max_channels
    cdef Py_ssize_t max_frames                    # each channel's history bounds
    cdef Py_ssize_t max_bytes
    cdef Py_ssize_t bytes                         # every channel's history together
    cdef dict pinned                              # name -> subscribes queued: not evicted
    cdef Channel oldest, newest                   # the idle list, least recently used first
    cdef readonly unsigned long long evicted      # idle channels evicted for a new one
    cdef readonly unsigned long long refused      # new channels refused: all were busy
    cdef readonly unsigned long long freed        # idle channels freed by a sweep

    cdef inline Channel get(self, object name):
        return self.channels.get(name)

    cdef Channel open(self, object name, unsigned long long tick)
    cdef void touch(self, Channel channel, unsigned long long tick) noexcept
    cdef int set_busy(self, object name, bint busy, unsigned long long tick) except -1
    cdef int forget(self, Channel channel) except -1
    cdef Py_ssize_t sweep(self, unsigned long long cutoff, Py_ssize_t limit) except -1
    cdef int trim_history(self, Py_ssize_t target) except -1
    cdef void _append_idle(self, Channel channel) noexcept
    cdef void _remove_idle(self, Channel channel) noexcept
