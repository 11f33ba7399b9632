"""C contract of the slow-consumer policy: what happens to a client over its byte budget."""

from agentcast._history cimport ChannelTable
from agentcast._sink cimport Sink


cdef class Skipping:
    cdef dict from_seq                 # channel -> first seq it missed
    cdef Py_ssize_t frames             # channel frames it missed
    cdef Py_ssize_t direct_bytes       # frames addressed to it, sent while it skips


cdef class SlowConsumerPolicy:
    cdef readonly bint skip                 # "skip"; else "close"
    cdef public Py_ssize_t budget
    cdef object notices
    cdef readonly unsigned long long dropped_clients
    cdef readonly unsigned long long skip_episodes
    cdef readonly unsigned long long skipped_frames

    cdef inline bint over(self, Py_ssize_t queued) noexcept:  # per write: inline
        return queued > self.budget

    cdef bint behind(self, Sink sink) except -1
    cdef Skipping start_skipping(self, long long client_id, Py_ssize_t queued)
    cdef int count_skipped(self, Skipping skipping, Py_ssize_t frames) except -1
    cdef bint direct_overflows(self, Skipping skipping, Py_ssize_t size) except -1
    cdef bytes end_skipping(self, Skipping skipping, ChannelTable table,
                            unsigned long long tick, bint this_tick, dict live_from)
    cdef int close(self, long long client_id, Sink sink, Py_ssize_t queued) except -1
