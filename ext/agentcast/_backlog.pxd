"""C contract of a lagging client's backlog: its frames held in the core as entries, where
consecutive deltas of one stream merge into one."""

from agentcast._buffer cimport Buffer
from agentcast._frames cimport EventFrames


cdef class Merge:
    cdef EventFrames first             # the first delta: its kind, id and context
    cdef str stream_id
    cdef bytes frame                   # the first delta's own frame (sent as is if alone)
    cdef unsigned long long from_seq
    cdef unsigned long long seq
    cdef list pieces                   # the deltas' text, joined once when sent
    cdef Py_ssize_t chars              # their length


cdef class Backlog:
    cdef list entries                  # bytes frames and Merges, in the order they came
    cdef dict tails                    # channel -> its last entry, if a Merge
    cdef readonly Py_ssize_t nbytes    # about what the entries will take on the wire
    cdef readonly Py_ssize_t frames    # frames they stand for, before merging
    cdef public double quiet_since     # loop time it was last seen empty and drained, or 0

    cdef int add_frame(self, object channel, bytes frame) except -1
    cdef bint add_delta(self, object channel, EventFrames event, str stream_id, str delta,
                        bytes frame, unsigned long long seq) except -1
    cdef Py_ssize_t drain(self, Buffer* out, object codec, int encoding) except -1
