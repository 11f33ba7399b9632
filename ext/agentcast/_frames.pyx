"""An event's frames, one per encoding, each built the first time an encoding needs it.

A tick builds an event's frame once for each encoding its watchers speak, whatever their
number; an encoding nobody speaks costs nothing. What an encoding needs besides the event
(its message's start, the completed item, the open run) is captured when the event is
observed, so a frame built later (a resume, a lagging client) is the same as one built
at once. ``codec.payloads`` gives the encoding's JSON payloads; they are framed here:
as WebSocket text frames, or as SSE events (``id: <seq>`` and one ``data:`` line each:
the payloads are single-line JSON or ``[DONE]``).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from agentcast._buffer cimport text_frame, write_decimal

cdef object UNBUILT = object()

cdef enum:
    # What an event kept in history holds besides its text and frames: this object, its
    # list of frames (9 encodings) and the event's dict (tracemalloc: 432 bytes for a
    # delta); the history's byte bound counts it, so it bounds the memory it takes.
    EVENT_BYTES = 432
    NATIVE = 1


cdef class EventFrames:
    def __cinit__(self, object codec, object channel, dict event, unsigned long long seq,
                  object item, object run, Py_ssize_t encodings):
        self.codec = codec
        self.channel = channel
        self.event = event
        self.seq = seq
        self.item = item
        self.run = run
        self.frames = [UNBUILT] * encodings

    cdef object get(self, int encoding):
        """The event's frame in ``encoding`` (bytes), or None when it has none."""
        cdef object frame = self.frames[encoding]
        if frame is UNBUILT:
            frame = event_frame(self.codec, encoding, self.channel, self.event, self.seq,
                                None, self.item, self.run)
            self.frames[encoding] = frame
            if frame is not None:
                self.nbytes += PyBytes_GET_SIZE(<bytes>frame)
        return frame

    cdef int count_kept(self) except -1:
        """Fix ``kept``, the bytes the history counts for this event: its frames built so
        far, its text and ``EVENT_BYTES``. An event nobody took yet that is not a delta (a
        state, a result: any size) is encoded natively to be counted."""
        cdef object text = self.event.get("delta")
        if text is None:
            if not self.nbytes:
                self.get(NATIVE)
            text = self.event.get("content", "")
        self.kept = self.nbytes + EVENT_BYTES + (len(text) if type(text) is str else 0)
        return 0


cdef object event_frame(object codec, int encoding, object channel, dict event,
                        unsigned long long seq, object from_seq, object item, object run):
    """``event``'s frame in ``encoding``, framed for its transport; None when it has none."""
    cdef list payloads = codec.payloads(encoding, channel, event, seq, from_seq, item, run)
    if not payloads:
        return None
    if codec.sse[encoding]:
        return b"".join([_sse_event(payload, seq) for payload in payloads])
    if len(payloads) == 1:
        return text_frame(<bytes>payloads[0])
    return b"".join([text_frame(payload) for payload in payloads])


cdef bytes _sse_event(bytes payload, unsigned long long seq):
    """``id: <seq>\\ndata: <payload>\\n\\n``, one allocation."""
    cdef char digits[24]
    cdef Py_ssize_t nd = write_decimal(digits, seq)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 4 + nd + 7 + n + 2)
    cdef char* p = PyBytes_AS_STRING(out)
    memcpy(p, b"id: ", 4)
    memcpy(p + 4, digits, nd)
    memcpy(p + 4 + nd, b"\ndata: ", 7)
    memcpy(p + 11 + nd, PyBytes_AS_STRING(payload), n)
    memcpy(p + 11 + nd + n, b"\n\n", 2)
    return out


cdef bytes sse_comment(bytes text):
    """``text`` as an SSE comment (every line ``: ``-prefixed): what an SSE client gets of
    a frame that is not an event of its stream (an ack, a notice): every parser skips it."""
    return b": " + text.replace(b"\n", b"\n: ") + b"\n\n"
