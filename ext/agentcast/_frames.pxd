"""C contract of an event's frames: built once per encoding, when an encoding first needs
them, and framed for the encoding's transport (WebSocket or SSE)."""


cdef class EventFrames:
    cdef readonly object channel
    cdef readonly dict event
    cdef readonly unsigned long long seq
    cdef object item                   # what the encodings need besides the event
    cdef object run                    # the channel's open run at the event
    cdef object codec
    cdef list frames                   # by encoding id: bytes, None (no frame), or UNBUILT
    cdef readonly Py_ssize_t nbytes    # of the frames built so far
    cdef public Py_ssize_t kept        # bytes the history counted for it (fixed when kept)

    cdef object get(self, int encoding)
    cdef int count_kept(self) except -1


cdef object event_frame(object codec, int encoding, object channel, dict event,
                        unsigned long long seq, object from_seq, object item, object run)
cdef bytes sse_comment(bytes text)
