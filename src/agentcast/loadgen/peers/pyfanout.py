"""The most careful pure-Python fan-out: what agentcast's design costs without Cython.

Same architecture as agentcast's core, in Python: the publisher thread
serializes once (orjson), builds the frame header once, appends the frame to a
deque and wakes the loop at most once per tick (``call_soon_threadsafe`` only
when no tick is pending). Each tick joins every pending frame into one buffer
and writes it to each client's raw transport with one ``write``, bypassing
picows' per-message framing.
"""

from __future__ import annotations

import collections
from typing import Any

import orjson
import uvloop

from agentcast.loadgen.peers._loop import LoopServer
from agentcast.loadgen.peers.picows import PicowsPeer


def frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (server to client) around ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


class PyfanoutPeer(PicowsPeer):
    """picows' server and client registry, with agentcast's queue-and-tick fan-out in Python."""

    def __init__(self, tls: int = 0) -> None:
        super().__init__(tls)
        self._loop = LoopServer(uvloop.new_event_loop, "pyfanout-peer")
        self._pending: collections.deque[bytes] = collections.deque()
        self._tick_scheduled = False

    def publish(self, obj: Any) -> None:
        # Append before reading the flag: a tick that already cleared it drains this frame,
        # and one that has not cleared it yet is still to come.
        self._pending.append(frame(orjson.dumps(obj)))
        if not self._tick_scheduled:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        pending = self._pending
        data = b"".join([pending.popleft() for _ in range(len(pending))])
        if not data:
            return
        for transport in self.clients:
            transport.underlying_transport.write(data)
