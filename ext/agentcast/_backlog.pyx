"""A lagging client's backlog: lossless merging of the deltas it has not been sent yet.

A client whose transport holds more than the core's ``lag_threshold`` stops sharing its
group's writes; what comes for it meanwhile is held here. A ``message_delta`` or
``tool_call_delta`` whose channel's last held entry is a delta of the same stream joins
that entry: the text pieces are kept and joined once, when the entry is sent, into one
event that covers ``from_seq``..``seq``. Only the last entry of a channel takes a merge,
so each channel's seqs still go out in order; anything else (a boundary, another
stream's event, a frame addressed to the client) ends the merge. The concatenated text
is the same bytes a fast client gets one delta at a time. A merge stops growing at
``MERGE_LIMIT`` characters, and the next delta starts another: clients cap the messages
they take (``websockets``: 1 MiB by default), and a merged frame must fit what the
deltas did.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from agentcast._buffer cimport Buffer, buf_append
from agentcast._frames cimport EventFrames, event_frame

cdef enum:
    MERGE_LIMIT_CHARS = 64 * 1024

MERGE_LIMIT = MERGE_LIMIT_CHARS


cdef class Merge:
    def __cinit__(self, EventFrames first, str stream_id, str delta, bytes frame,
                  unsigned long long seq):
        self.first = first
        self.stream_id = stream_id
        self.frame = frame
        self.from_seq = self.seq = seq
        self.pieces = [delta]
        self.chars = len(delta)


cdef class Backlog:
    def __cinit__(self):
        self.entries = []
        self.tails = {}

    cdef int add_frame(self, object channel, bytes frame) except -1:
        """Hold a frame as it is; ``channel`` None: addressed to the client (nothing of any
        channel merges across it, so it stays after everything held before it)."""
        self.entries.append(frame)
        self.nbytes += PyBytes_GET_SIZE(frame)
        self.frames += 1
        if channel is None:
            self.tails.clear()
        else:
            self.tails.pop(channel, None)
        return 0

    cdef bint add_delta(self, object channel, EventFrames event, str stream_id, str delta,
                        bytes frame, unsigned long long seq) except -1:
        """Hold a delta (``frame``: ``event``'s in the client's encoding); True if it joined
        the channel's last entry."""
        cdef Merge tail = self.tails.get(channel)
        self.frames += 1
        if (tail is not None and tail.stream_id == stream_id
                and tail.first.event["type"] == event.event["type"]
                and tail.chars + len(delta) <= MERGE_LIMIT_CHARS):
            tail.pieces.append(delta)
            tail.chars += len(delta)
            tail.seq = seq
            self.nbytes += len(delta)
            return True
        tail = Merge(event, stream_id, delta, frame, seq)
        self.entries.append(tail)
        self.tails[channel] = tail
        self.nbytes += PyBytes_GET_SIZE(frame)
        return False

    cdef Py_ssize_t drain(self, Buffer* out, object codec, int encoding) except -1:
        """Append every entry's frame to ``out`` (a merge encoded once, here) and empty the
        backlog; returns the frames it stood for."""
        cdef object entry
        cdef Merge merge
        cdef EventFrames first
        cdef bytes frame
        cdef Py_ssize_t frames = self.frames
        for entry in self.entries:
            if type(entry) is bytes:
                frame = <bytes>entry
            else:
                merge = <Merge>entry
                if len(merge.pieces) == 1:
                    frame = merge.frame
                else:
                    first = merge.first
                    frame = event_frame(
                        codec, encoding, first.channel,
                        {**first.event, "delta": "".join(merge.pieces)},
                        merge.seq, merge.from_seq, first.item, first.run)
            buf_append(out, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
        self.entries = []
        self.tails.clear()
        self.nbytes = self.frames = 0
        return frames
