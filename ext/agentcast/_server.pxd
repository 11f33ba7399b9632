# cython: language_level=3
"""C contract of the picows side: a sink over a WSTransport and the per-connection listener."""

from picows.picows cimport WSFrame, WSListener, WSTransport

from agentcast._fanout cimport FanoutCore
from agentcast._sink cimport Sink
from agentcast._utf8 cimport Utf8State


cdef enum:
    CLOSE_SLOTS = 16      # the codes counted by name, then one slot for every other code
    CLOSERS = 3           # who closed first: the client, the server, nobody (1006)


cdef class ConnectionStats:
    cdef unsigned long long _closes[CLOSERS][CLOSE_SLOTS]
    cdef readonly unsigned long long protocol_errors

    cdef int count_close(self, int code, int closer) except -1
    cdef unsigned long long closed_by_server(self, int code) noexcept


cdef class TransportSink(Sink):
    cdef WSTransport transport
    cdef object _queued
    cdef object _closing
    cdef object _write
    cdef object _loop
    cdef double _close_grace


cdef class ServerListener(WSListener):
    cdef FanoutCore _core
    cdef ConnectionStats _stats
    cdef object _connect_log               # whose connect and disconnect lines are written
    cdef object _on_message
    cdef object _on_binary
    cdef double _close_grace
    cdef Py_ssize_t _max_message_size
    cdef readonly long long client_id
    cdef bytearray _fragments
    cdef int _fragment_type
    cdef Utf8State _utf8
    cdef double _rate
    cdef double _tokens
    cdef double _refilled_at
    cdef object _peer
    cdef double _connected_at
    cdef int _encoding                     # how agent events reach this connection

    cdef bint _over_rate(self, double cost) noexcept
    cdef int _answer_close(self, WSTransport transport, WSFrame frame) except -1
    cdef int _answer_ping(self, WSTransport transport, WSFrame frame) except -1
    cdef int _reject(self, WSTransport transport, int code, str reason) except -1
    cdef int _deliver(self, WSTransport transport, int msg_type, bytes data) except -1
    cdef int _log_disconnect(self, WSTransport transport, int code, str reason,
                             int closer) except -1
