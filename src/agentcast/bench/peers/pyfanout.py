"""The most careful pure-Python fan-out: what agentcast's design costs without Cython.

Same architecture as agentcast's core, in Python: the publisher thread
serializes once (orjson), builds the frame header once, appends the frame to a
deque and wakes the loop at most once per tick (``call_soon_threadsafe`` only
when no tick is pending). Each tick joins every pending frame into one buffer
and writes it to each client's raw transport with one ``write``, bypassing
picows' per-message framing. Many agents: frames queued with their agent, and each
tick writes each agent's joined frames to its watchers only.
"""

from __future__ import annotations

import collections
from typing import Any

import orjson
import uvloop

from agentcast.bench.peers._loop import LoopServer
from agentcast.bench.peers.picows import PicowsPeer


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
        self._pending_to: collections.deque[tuple[str, bytes]] = collections.deque()
        self._tick_scheduled = False

    def publish(self, obj: Any) -> None:
        self._pending.append(frame(orjson.dumps(obj)))
        self._wake()

    def publish_to(self, agent: str, obj: Any) -> None:
        self._pending_to.append((agent, frame(orjson.dumps(obj))))
        self._wake()

    def _wake(self) -> None:
        # Called after the append: a tick that already cleared the flag drains this frame,
        # and one that has not cleared it yet is still to come.
        if not self._tick_scheduled:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        pending = self._pending
        data = b"".join([pending.popleft() for _ in range(len(pending))])
        if data:
            for transport in self.clients:
                transport.underlying_transport.write(data)
        if self._pending_to:
            self._tick_agents()

    def _tick_agents(self) -> None:
        """Each agent's pending frames joined, written to its watchers with one write each."""
        pending = self._pending_to
        frames: dict[str, list[bytes]] = {}
        for _ in range(len(pending)):
            agent, data = pending.popleft()
            frames.setdefault(agent, []).append(data)
        for agent, queued in frames.items():
            data = b"".join(queued)
            for transport in self.watchers.of(agent):
                transport.underlying_transport.write(data)
