"""What one connection's reads may hold, bounded where the bytes arrive: the protocol.

picows 2.3.1 reads into one buffer per connection that it doubles whenever a read fills
nine tenths of it, and never shrinks: a client that sent fast enough (8 MB of pongs) left
2.3 MiB behind on an idle connection. Here a read takes at most ``READ_SIZE`` bytes, so
the buffer grows only for what a frame needs: it holds at most one unfinished frame (up
to ``max_message_size``) and one read, and so stays below about
2.2 x (``max_message_size`` + ``READ_SIZE``): 112 KiB at the 64 KiB default.

Before the upgrade picows keeps the request head in that buffer, up to 16 KiB, and drops
a longer one without a response (a client still sending saw a reset). Reads stop one
byte short of that limit, and a head that has not ended there is answered 431 here. What
the client still sends is read and thrown away until it closes, or ``LINGER`` seconds:
closing on unread bytes would reset the connection, and the reset can erase the 431
before the client reads it (RFC 9112 9.6).

A TLS handshake where the request should begin (a ``wss://`` client on a plain-text port:
its first byte, 0x16, a TLS handshake record, begins no HTTP method) is answered 400 at
once, the same way, where it would otherwise wait out the handshake deadline for a head
that never ends; the client fails at once and can say the port speaks ``ws://``. The
check is one byte of a connection's first read.

A subclass may take some requests from picows before it reads them (``takes``: the SSE
routes, which picows would answer with one response and close): their head is read here,
bounded the same way, and handed to ``take`` whole.
"""

from __future__ import annotations

import asyncio
from typing import Any

from picows.picows import WSProtocol, _parse_http_request  # type: ignore[attr-defined]

from agentcast.serve import refusals

__all__ = ["HEAD_LIMIT", "LINGER", "TLS_HANDSHAKE_BYTE", "BoundedReadsProtocol"]

HEAD_LIMIT = 16 * 1024  # picows 2.3.1 drops a request head of this many bytes
READ_SIZE = 16 * 1024
LINGER = 2.0  # seconds a refused client may go on sending before it is closed


TLS_HANDSHAKE_BYTE = 0x16  # the content type of a TLS record that opens a handshake
# What refused clients still send lands here, never read (shared: no one reads it).
_DISCARDED = memoryview(bytearray(READ_SIZE))
# A taken request's head is read here, then copied (shared: each read is copied at once).
_TAKEN_READ = memoryview(bytearray(READ_SIZE))
# _head_left past the head: reads go to picows; or the head was refused: they are dropped;
# or the request is taken from picows: reads go to _TAKEN_READ until the head ends.
_HEAD_READ = -1
_HEAD_REFUSED = -2
_HEAD_TAKEN = -3
_FIRST_READ = HEAD_LIMIT - 1  # _head_left before the first read: nothing read yet
_HEAD_END = b"\r\n\r\n"
# picows' own, called directly: super() would cost as much again on every read.
_picows_get_buffer = WSProtocol.get_buffer
_picows_buffer_updated = WSProtocol.buffer_updated


class BoundedReadsProtocol(WSProtocol):  # type: ignore[misc]
    """picows' server protocol with bounded reads, a 431 for an oversized head and a 400
    for a TLS handshake; a subclass counts the refusals (``refused``)."""

    __slots__ = (
        "_head_left",  # bytes of head picows may still take; or _HEAD_*
        "_head_seen",  # while it is not known whether the request is taken: its bytes
        "_head_view",  # where the last read went, while that is not known
        "_taken",  # a taken request's head so far
    )

    def __init__(self, *args: Any, taking: bool = False) -> None:
        self._head_left = _FIRST_READ
        self._head_seen: bytes | None = b"" if taking else None
        self._head_view: memoryview | None = None
        self._taken: bytearray | None = None
        super().__init__(*args)

    def refused(self, refusal: refusals.Refusal) -> None:
        """Count one connection answered ``refusal`` (HEAD_TOO_LARGE, TLS_HANDSHAKE)."""
        raise NotImplementedError

    def takes(self, head: bytes) -> bool | None:
        """Whether the request whose head starts with ``head`` is taken from picows (None:
        too few bytes to tell). Asked only when ``taking``."""
        raise NotImplementedError

    def take(self, head: bytes, request: Any) -> None:
        """Answer a taken request: ``request`` is picows' parse of ``head`` (a
        ``WSUpgradeRequest``), or the ``RuntimeError`` saying why it is malformed."""
        raise NotImplementedError

    def get_buffer(self, size_hint: int) -> memoryview:
        left = self._head_left
        if left == _HEAD_READ:
            return _picows_get_buffer(self, size_hint)[:READ_SIZE]  # type: ignore[no-any-return]
        if left == _HEAD_REFUSED:
            return _DISCARDED
        if left == _HEAD_TAKEN:
            return _TAKEN_READ
        view: memoryview = _picows_get_buffer(self, size_hint)[:left]
        if self._head_seen is not None or left == _FIRST_READ:
            self._head_view = view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        left = self._head_left
        if left == _HEAD_READ:
            _picows_buffer_updated(self, nbytes)
        elif left == _HEAD_TAKEN:
            self._read_taken(nbytes)
        elif left == _HEAD_REFUSED or (left == _FIRST_READ and self._refused_tls()):
            return
        elif self._head_seen is None or not self._decide(nbytes):
            self._head_updated(left - nbytes, nbytes)

    def _refused_tls(self) -> bool:
        """Whether the first read begins with a TLS handshake (then it is refused)."""
        view = self._head_view
        assert view is not None
        if self._head_seen is None:  # else _decide reads it next
            self._head_view = None
        if view[0] != TLS_HANDSHAKE_BYTE:  # a read is never empty
            return False
        self._head_view = self._head_seen = None
        self._refuse(refusals.TLS_HANDSHAKE)
        return True

    def _decide(self, nbytes: int) -> bool:
        """Whether the request is taken (then its head is read here from now on)."""
        assert self._head_seen is not None and self._head_view is not None
        seen = self._head_seen + bytes(self._head_view[:nbytes])
        self._head_view = None
        taken = self.takes(seen)
        self._head_seen = seen if taken is None else None
        if not taken:
            return False
        self._head_left = _HEAD_TAKEN
        self._taken = bytearray(seen)
        self._read_taken(0)
        return True

    def _read_taken(self, nbytes: int) -> None:
        taken = self._taken
        assert taken is not None
        taken += _TAKEN_READ[:nbytes]
        end = taken.find(_HEAD_END, 0, HEAD_LIMIT)
        if end < 0:
            if len(taken) >= HEAD_LIMIT:
                self._taken = None
                self._refuse(refusals.HEAD_TOO_LARGE)
            return
        head = bytes(taken[:end])
        self._taken = None
        self._head_left = _HEAD_REFUSED  # anything after the head is dropped
        try:
            request = _parse_http_request(head)
        except RuntimeError as malformed:
            request = malformed
        self.take(head, request)

    def _head_updated(self, left: int, nbytes: int) -> None:
        """picows reads the head so far; once it has parsed (and answered) it, or given up
        on it, reads go to picows; a head still unfinished with no byte left gets 431."""
        _picows_buffer_updated(self, nbytes)
        if self.transport.request is not None or self.transport.underlying_transport.is_closing():
            self._head_left = _HEAD_READ
        elif left:
            self._head_left = left
        else:
            self._refuse(refusals.HEAD_TOO_LARGE)

    def _refuse(self, refusal: refusals.Refusal) -> None:
        """Answer ``refusal`` (counted) and drop what the client still sends."""
        self._head_left = _HEAD_REFUSED
        self.refused(refusal)
        transport = self.transport.underlying_transport
        transport.write(bytes(refusal.response().to_bytes()))
        if transport.can_write_eof():
            transport.write_eof()  # the client reads to the end, then closes: eof_received
        asyncio.get_running_loop().call_later(LINGER, transport.close)
