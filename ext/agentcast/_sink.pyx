# cython: language_level=3
"""Sinks: the interface the core writes a client's bytes to, and two plain implementations.

The picows connection is another sink (``_server.TransportSink``); a connection
owned by another server is a ``CallbackSink``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE


cdef class Sink:
    """Where one client's bytes go. The core only ever talks to this interface."""

    def __cinit__(self):
        self.fd = -1

    cdef Py_ssize_t queued(self) except -1:
        """Bytes the transport holds unsent (>= 0)."""
        raise NotImplementedError

    cdef bint closing(self) except -1:
        """Closing or gone: its fd may be closed, even reused; the core writes nothing more."""
        raise NotImplementedError

    cdef int write(self, const char* data, Py_ssize_t size) except -1:
        raise NotImplementedError

    cdef int write_bytes(self, bytes data) except -1:
        """Write ``data`` whole. The core hands every sink that queues a round the same
        object, so a sink that can keep a reference (a transport) need not copy it."""
        return self.write(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    cdef int close(self, int code, str reason) except -1:
        raise NotImplementedError

    cdef int abort(self) except -1:
        raise NotImplementedError


cdef class MemorySink(Sink):
    """A sink that keeps (or only counts) what it is given: for tests and benchmarks."""

    def __init__(self, bint keep=True):
        self.data = bytearray() if keep else None
        self.close_code = 0

    cdef Py_ssize_t queued(self) except -1:
        return self.backlog

    cdef bint closing(self) except -1:
        return self.aborted

    cdef int write(self, const char* data, Py_ssize_t size) except -1:
        self.writes += 1
        self.received += size
        if self.data is not None:
            self.data += data[:size]
        return 0

    cdef int close(self, int code, str reason) except -1:
        self.close_code = code
        self.close_reason = reason
        return 0

    cdef int abort(self) except -1:
        self.aborted = True
        return 0


cdef class CallbackSink(Sink):
    """A sink driven by Python callables: for clients the core cannot write to directly.

    ``queued()`` returns the bytes handed over and not yet sent (a negative count is a
    bug in the caller's accounting and fails the sink); ``closing()`` (default: never)
    says that nothing more should be written.
    """

    def __init__(self, on_bytes, queued, close, abort, *, closing=None):
        self._on_bytes = on_bytes
        self._queued = queued
        self._closing = closing
        self._close = close
        self._abort = abort

    cdef Py_ssize_t queued(self) except -1:
        cdef Py_ssize_t count = self._queued()
        if count < 0:
            raise ValueError(f"queued() returned {count}: unsent bytes cannot be negative")
        return count

    cdef bint closing(self) except -1:
        return self._closing is not None and self._closing()

    cdef int write(self, const char* data, Py_ssize_t size) except -1:
        self._on_bytes(data[:size])
        return 0

    cdef int write_bytes(self, bytes data) except -1:
        self._on_bytes(data)
        return 0

    cdef int close(self, int code, str reason) except -1:
        self._close(code, reason)
        return 0

    cdef int abort(self) except -1:
        self._abort()
        return 0


cdef class StreamSink(Sink):
    """Writes a one-way stream (SSE) to an asyncio transport of its own.

    With ``end`` (``data: [DONE]\\n\\n``: an AI SDK resume stream) the stream is over
    once those bytes are written: nothing after them in the same write goes out, and the
    connection is closed gracefully. Such a sink is written through ``write_bytes`` only
    (no direct socket sends), where it can look for them.
    """

    def __init__(self, transport, loop, double close_grace, bytes end=None):
        self._transport = transport
        self._write = transport.write
        self._queued = transport.get_write_buffer_size
        self._closing = transport.is_closing
        self._loop = loop
        self._close_grace = close_grace
        self._end = end
        sock = transport.get_extra_info("socket")
        tls = transport.get_extra_info("sslcontext") is not None
        self.fd = -1 if end is not None or tls or sock is None else sock.fileno()

    cdef Py_ssize_t queued(self) except -1:
        return self._queued()

    cdef bint closing(self) except -1:
        return self.ended or self._closing()

    cdef int write(self, const char* data, Py_ssize_t size) except -1:
        return self.write_bytes(data[:size])

    cdef int write_bytes(self, bytes data) except -1:
        cdef Py_ssize_t at
        if self.ended:
            return 0
        if self._end is not None:
            at = data.find(self._end)
            if at >= 0:
                self._write(data[:at + len(self._end)])
                self.ended = True
                self._transport.close()
                return 0
        self._write(data)
        return 0

    cdef int close(self, int code, str reason) except -1:
        """A last comment naming the close code (what an EventSource cannot see, a
        reader of the raw stream can), then the connection closes once its bytes are out;
        a peer that does not read them within the grace period is aborted."""
        if self._closing():
            return 0
        text = f": closed {code} {reason}".replace("\n", " ")
        self._write(text.encode() + b"\n\n")
        self._transport.close()
        self._loop.call_later(self._close_grace, self._transport.abort)
        return 0

    cdef int abort(self) except -1:
        self._transport.abort()
        return 0
