"""C contract of a sink: where one client's bytes go. The core only ever talks to this."""


cdef class Sink:
    cdef public int fd   # socket for direct writes while nothing is queued, or -1

    cdef Py_ssize_t queued(self) except -1   # bytes the transport holds unsent, >= 0
    cdef bint closing(self) except -1        # closing or gone: write nothing more
    cdef int write(self, const char* data, Py_ssize_t size) except -1
    cdef int write_bytes(self, bytes data) except -1  # whole, and may keep a reference
    cdef int close(self, int code, str reason) except -1
    cdef int abort(self) except -1


cdef class MemorySink(Sink):
    cdef readonly bytearray data
    cdef readonly Py_ssize_t received
    cdef readonly Py_ssize_t writes
    cdef public Py_ssize_t backlog
    cdef readonly int close_code
    cdef readonly str close_reason
    cdef readonly bint aborted


cdef class CallbackSink(Sink):
    cdef object _on_bytes
    cdef object _queued
    cdef object _closing
    cdef object _close
    cdef object _abort


cdef class StreamSink(Sink):
    cdef object _transport
    cdef object _write
    cdef object _queued
    cdef object _closing
    cdef object _loop
    cdef double _close_grace
    cdef bytes _end                     # the last bytes the stream sends, or None
    cdef readonly bint ended            # ``_end`` was written: the stream is over
