# cython: language_level=3
"""picows glue: each connection is a ``TransportSink`` in the core and a ``ServerListener``.

The listener hands complete text messages to ``on_message(client_id, data)``
on the loop thread, reassembles fragmented messages up to the size limit,
answers pings and close frames, and unregisters the client when the peer goes away.
What RFC 6455 says must fail the connection fails it: RSV bits (no extension is
negotiated) with 1002, text that is not UTF-8 with 1007 (checked fragment by fragment),
invalid close codes with 1002. Every frame but a close counts against the client's
message rate as it arrives, pongs and empty fragments too (1008 beyond it).

``ConnectionStats`` counts, for one server, how its connections ended (close code and
who closed first) and the connections failed for their client's frames.
"""

import logging

from agentcast.printable import QUOTE_LIMIT, clip, quote

from libc.stdint cimport uint8_t
from picows.picows cimport WSCloseCode, WSMsgType
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from agentcast._utf8 cimport utf8_complete, utf8_feed, utf8_reset

log = logging.getLogger("agentcast.server")
INFO = logging.INFO
ABNORMAL_CLOSURE = 1006  # no close frame either way (RFC 6455 7.1.5)

UNSUPPORTED_DATA = 1003
PROTOCOL_ERROR = 1002
INVALID_TEXT = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009

cdef enum:
    PONG_HEADER = 2  # a server frame of at most 125 bytes: two header bytes
    # A fragment after a message's first frame takes 1/16 of a message's token: a message
    # may come in 16 fragments for the price of two, and a peer that sends nothing but
    # empty fragments is held to 16 times the message rate.
    FRAGMENTS_PER_TOKEN = 16

cdef enum:
    BY_CLIENT = 0
    BY_SERVER = 1
    BY_NOBODY = 2

CLOSED_BY = ("client", "server", "nobody")
# The codes counted by name, in slot order: RFC 6455's and IANA's 1000-1014 but the
# reserved 1004 and 1015, and 3005 (agentcast.serve.auth.TOKEN_EXPIRED). Any other code a peer
# sends is "other": random codes cannot grow the label set.
CLOSE_CODES = (1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
               1014, 3005)
CLOSE_LABELS = tuple(str(code) for code in CLOSE_CODES) + ("other",)
# What a close the server sent first says of why it dropped the client (the slow-consumer
# policy's 1013 is counted by the core itself, also for sinks that are no connection).
DROP_REASONS = {"rate": (1008,), "size": (1009,), "auth": (3005,),
                "protocol": (1002, 1003, 1007)}


cdef inline bint is_valid_close_code(int code) noexcept:
    """Codes a peer may send (RFC 6455 7.4.1, 7.4.2): 1004-1006 and 1015 are reserved,
    3000-4999 are for libraries and applications, the rest unassigned."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


cdef inline int close_slot(int code) noexcept:
    """The counter slot of ``code``: its index in ``CLOSE_CODES``, else the last ("other")."""
    if 1000 <= code <= 1003:
        return code - 1000
    if 1005 <= code <= 1014:
        return code - 1001
    if code == 3005:
        return CLOSE_SLOTS - 2
    return CLOSE_SLOTS - 1


cdef tuple how_it_ended(WSTransport transport):
    """(code, reason, closer) of the close frame that ended the connection, whichever side
    sent it first; (1006, "", BY_NOBODY) when no close frame was exchanged."""
    handshake = transport.close_handshake
    if handshake is None:
        return ABNORMAL_CLOSURE, "", BY_NOBODY
    if handshake.recv_then_sent or handshake.sent is None:
        return int(handshake.recv.code), handshake.recv.reason or "", BY_CLIENT
    return int(handshake.sent.code), handshake.sent.reason or "", BY_SERVER


cdef class ConnectionStats:
    """How one server's connections ended: the close that ended each upgraded one, and how
    many failed for their client's frames (picows' parser or the listener found them);
    refused upgrades are counted by the admission layer (``agentcast.serve.admission``). Loop
    thread only; read at scrape time."""

    cdef int count_close(self, int code, int closer) except -1:
        self._closes[closer][close_slot(code)] += 1
        return 0

    cdef unsigned long long closed_by_server(self, int code) noexcept:
        return self._closes[BY_SERVER][close_slot(code)]

    def client_fault(self):
        """Count one connection failed for its client's malformed frames."""
        self.protocol_errors += 1

    def closes(self):
        """``{(code, closed_by): count}`` of the connections ended so far, zeros left out:
        ``code`` one of ``CLOSE_LABELS``, ``closed_by`` one of ``CLOSED_BY``."""
        cdef int closer, slot
        counts = {}
        for closer in range(CLOSERS):
            for slot in range(CLOSE_SLOTS):
                if self._closes[closer][slot]:
                    counts[CLOSE_LABELS[slot], CLOSED_BY[closer]] = self._closes[closer][slot]
        return counts

    def stats(self):
        """``client_protocol_errors``, and ``dropped_clients_<reason>`` for each of
        ``DROP_REASONS``: the closes the server sent first with the reason's codes."""
        stats = {"client_protocol_errors": self.protocol_errors}
        for reason, codes in DROP_REASONS.items():
            stats[f"dropped_clients_{reason}"] = sum(self.closed_by_server(c) for c in codes)
        return stats


cdef inline double monotonic() noexcept:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cdef str peer_address(WSTransport transport):
    """``host:port`` of the peer (``[host]:port`` for IPv6), or what the transport says."""
    peer = transport.underlying_transport.get_extra_info("peername")
    if not isinstance(peer, tuple):
        return str(peer)
    host = peer[0]
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


cdef class TransportSink(Sink):
    """Writes through the picows connection's transport; exposes its socket for direct sends."""

    def __cinit__(self, WSTransport transport, double close_grace):
        underlying = transport.underlying_transport
        self.transport = transport
        self._queued = underlying.get_write_buffer_size
        self._closing = underlying.is_closing
        self._write = underlying.write
        self._loop = transport._loop
        self._close_grace = close_grace
        sock = underlying.get_extra_info("socket")
        self.fd = -1 if transport.is_secure or sock is None else sock.fileno()

    cdef Py_ssize_t queued(self) except -1:
        return self._queued()

    cdef bint closing(self) except -1:
        return self._closing()

    cdef int write(self, const char* data, Py_ssize_t size) except -1:
        self._write(data[:size])
        return 0

    cdef int write_bytes(self, bytes data) except -1:
        self._write(data)
        return 0

    cdef int close(self, int code, str reason) except -1:
        """Close frame after the queued bytes, then wait for the peer's close frame (RFC 6455
        7.1.1: closing TCP first would reset a peer still sending, losing our close frame);
        a peer that has not answered within the grace period is aborted."""
        if self.transport.is_disconnected:
            return 0
        if not self.transport.is_close_frame_sent:
            self.transport.send_close(<WSCloseCode>code, reason.encode())
        self._loop.call_later(self._close_grace, (<object>self.transport).disconnect, False)
        return 0

    cdef int abort(self) except -1:
        self.transport.disconnect(False)
        return 0


cdef class ServerListener(WSListener):
    def __cinit__(self, FanoutCore core, ConnectionStats stats not None, connect_log not None,
                  on_message, on_binary, double close_grace, Py_ssize_t max_message_size,
                  double max_message_rate=0.0, int encoding=0):
        self._rate = max_message_rate
        self._tokens = max_message_rate
        self._refilled_at = monotonic()
        self._core = core
        self._stats = stats
        self._connect_log = connect_log
        self._on_message = on_message
        self._on_binary = on_binary
        self._close_grace = close_grace
        self._max_message_size = max_message_size
        self._encoding = encoding
        self.client_id = 0

    cpdef on_ws_connected(self, WSTransport transport):
        self.client_id = self._core.add_client(
            TransportSink(transport, self._close_grace), self._encoding)
        # The peer is kept for the disconnect line: both lines or neither (a flood's are
        # counted by connect_log, agentcast.serve.connect_log.ConnectLog).
        if log.isEnabledFor(INFO) and self._connect_log.allows():
            self._connected_at = monotonic()
            self._peer = peer_address(transport)
            log.info(
                "client %d connected from %s",
                self.client_id,
                self._peer,
                extra={"peer": self._peer, "client_id": self.client_id},
            )

    cpdef on_ws_disconnected(self, WSTransport transport):
        cdef int code, closer
        if self.client_id:
            self._core.remove_client(self.client_id)
        code, reason, closer = how_it_ended(transport)
        self._stats.count_close(code, closer)
        if self._peer is not None and log.isEnabledFor(INFO):
            self._log_disconnect(transport, code, reason, closer)

    cdef int _log_disconnect(self, WSTransport transport, int code, str reason,
                             int closer) except -1:
        """Who closed first, with which code and (a short escaped excerpt of) which reason;
        1006 when no close frame was exchanged."""
        closed_by = CLOSED_BY[closer]
        duration = round(monotonic() - self._connected_at, 3)
        log.info(
            "client %d from %s disconnected after %.3f s: %d %s (closed by %s)",
            self.client_id,
            self._peer,
            duration,
            code,
            quote(reason),
            closed_by,
            extra={
                "peer": self._peer,
                "client_id": self.client_id,
                "code": code,
                "reason": clip(reason, QUOTE_LIMIT),
                "closed_by": closed_by,
                "duration_s": duration,
            },
        )
        return 0

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef int msg_type = frame.msg_type
        cdef int message_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self._reject(transport, PROTOCOL_ERROR, "RSV bits set without a negotiated extension")
            return
        if msg_type == WSMsgType.CLOSE:
            self._answer_close(transport, frame)
            return
        if transport.is_close_frame_sent:
            return  # closing: what the peer still sends is not served, pings included
        if self._over_rate(1.0 / FRAGMENTS_PER_TOKEN if msg_type == WSMsgType.CONTINUATION
                           else 1.0):
            self._reject(transport, POLICY_VIOLATION, "message rate limit exceeded")
            return
        if msg_type == WSMsgType.PONG:
            return  # unsolicited (picows takes the answer to its own ping before us)
        if msg_type == WSMsgType.PING:
            self._answer_ping(transport, frame)
            return
        if msg_type == WSMsgType.CONTINUATION:
            if self._fragments is None:
                self._reject(transport, PROTOCOL_ERROR, "continuation without a first fragment")
                return
            message_type = self._fragment_type
        elif self._fragments is not None:
            self._reject(transport, PROTOCOL_ERROR, "new message inside a fragmented one")
            return
        else:
            message_type = msg_type
            utf8_reset(&self._utf8)
        if message_type == WSMsgType.TEXT and not (
            utf8_feed(&self._utf8, <const uint8_t*>frame.payload_ptr, frame.payload_size)
            and (not frame.fin or utf8_complete(&self._utf8))
        ):
            self._fragments = None
            self._reject(transport, INVALID_TEXT, "text message is not valid UTF-8")
            return
        if frame.fin and self._fragments is None:
            self._deliver(transport, msg_type, frame.get_payload_as_bytes())
            return
        if self._fragments is None:
            self._fragments = bytearray()
            self._fragment_type = msg_type
        if len(self._fragments) + frame.payload_size > self._max_message_size:
            self._fragments = None
            self._reject(transport, MESSAGE_TOO_BIG, "message exceeds the size limit")
            return
        self._fragments += frame.get_payload_as_memoryview()
        if frame.fin:
            data = bytes(self._fragments)
            self._fragments = None
            self._deliver(transport, self._fragment_type, data)

    cdef int _answer_close(self, WSTransport transport, WSFrame frame) except -1:
        """Echo the peer's close (RFC 6455 5.5.1, 7.4): an empty close with an empty one,
        else its code, or 1002 for a code no endpoint may send; then end the connection."""
        cdef int code = frame.get_close_code()
        self._core.remove_client(self.client_id)
        if not transport.is_close_frame_sent:
            if frame.payload_size == 0:
                transport.send(WSMsgType.CLOSE, b"")
                transport.is_close_frame_sent = True  # send_close always writes a status code
            elif is_valid_close_code(code):
                transport.send_close(<WSCloseCode>code, frame.get_close_message())
            else:
                transport.send_close(WSCloseCode.PROTOCOL_ERROR, b"invalid close code")
        transport.disconnect(True)
        return 0

    cdef int _answer_ping(self, WSTransport transport, WSFrame frame) except -1:
        """A ping's pong counts against the client's byte budget: a peer that pings without
        reading the pongs cannot grow our buffers."""
        if self._core.admit_control(self.client_id, PONG_HEADER + frame.payload_size):
            transport.send_pong(frame.get_payload_as_bytes())
        return 0

    cdef bint _over_rate(self, double cost) noexcept:
        """Token bucket: ``rate`` tokens a second, bursts up to ``rate`` tokens; a frame
        takes ``cost`` of them. Every frame counts as it arrives, before anything is kept
        for it: the first frame of a message, a ping or an unsolicited pong one token, a
        further fragment ``1 / FRAGMENTS_PER_TOKEN``."""
        cdef double now
        if self._rate <= 0.0:
            return False
        now = monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        if self._tokens < cost:
            return True
        self._tokens -= cost
        return False

    cdef int _deliver(self, WSTransport transport, int msg_type, bytes data) except -1:
        handler = self._on_message if msg_type == WSMsgType.TEXT else self._on_binary
        if handler is None:
            if msg_type != WSMsgType.TEXT:
                self._reject(transport, UNSUPPORTED_DATA, "binary frames are not supported")
            return 0
        try:
            handler(self.client_id, data)
        except Exception:
            log.exception("message handler failed for client %d", self.client_id)
        return 0

    cdef int _reject(self, WSTransport transport, int code, str reason) except -1:
        """Fail the connection with ``code``, once; every fault but the rate limit's is a
        fault of the client's frames (``client_protocol_errors``)."""
        if transport.is_close_frame_sent:
            return 0  # failed already: what still comes is not served
        if code != POLICY_VIOLATION:
            self._stats.protocol_errors += 1
        log.debug("client %d closed (%d): %s", self.client_id, code, reason)
        self._core.flush()  # what the client was already answered goes out before the close
        self._core.close_client(self.client_id, code, reason)
        return 0
