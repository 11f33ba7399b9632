"""Connections owned by another server (e.g. a ``websockets`` app), fed by the fan-out core.

Old MemGPT server code calls ``interface.register_client(websocket)`` with its
own connections. Each becomes a client of the core like any other: the core
hands it framed bytes on the Broadcaster's thread, and this class sends the
messages, in order, with the connection's ``async send(str)`` on the loop the
connection lives on. That is a slower path than the core's direct writes (one
task per connection, one ``send`` per message) but it keeps old code working;
its unsent bytes count against the client budget like any client's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Any

from agentcast._ext import CallbackSink
from agentcast.serve.broadcaster import Broadcaster

log = logging.getLogger("agentcast.foreign")


def split_frames(data: bytes) -> list[bytes]:
    """Payloads of the unmasked, unfragmented server frames the core builds."""
    payloads = []
    pos, end = 0, len(data)
    while pos < end:
        size = data[pos + 1] & 0x7F
        pos += 2
        if size == 126:
            size, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif size == 127:
            size, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        payloads.append(data[pos : pos + size])
        pos += size
    return payloads


class ForeignConnection:
    """One foreign connection registered with the core; create it on the connection's loop.

    ``_unsent`` counts payload bytes the core handed over and ``send`` has not
    yet taken, the same unit on both sides, under a lock: the core adds on its
    loop thread, the sender subtracts on the connection's loop. Once the core
    closes it, the client is detached at once (the core has nothing more for it,
    so ``stop()`` need not wait for the app to unregister it); what was handed
    over is still sent before the close.
    """

    def __init__(self, hub: Broadcaster, websocket: Any) -> None:
        self._websocket = websocket
        self._loop = asyncio.get_running_loop()
        self._pending: collections.deque[bytes] = collections.deque()
        self._unsent = 0
        self._unsent_lock = threading.Lock()
        self._sender: asyncio.Task[None] | None = None
        self._close_with: tuple[int, str] | None = None  # sent once the pending are out
        self._closing = False  # the core closed it, or its peer is gone: take nothing more
        self._hub = hub
        sink = CallbackSink(
            self._take, self._queued, self._close, self._abort, closing=self._is_closing
        )
        self.client_id = hub.attach(sink)

    # ---- on the Broadcaster's loop thread (called by the core) -------------

    def _take(self, frames: bytes) -> None:
        payloads = split_frames(frames)
        with self._unsent_lock:
            self._unsent += sum(map(len, payloads))
        self._loop.call_soon_threadsafe(self._push, payloads)

    def _queued(self) -> int:
        return self._unsent

    def _is_closing(self) -> bool:
        return self._closing

    def _close(self, code: int, reason: str) -> None:
        self.detach()
        self._loop.call_soon_threadsafe(self._close_after_pending, code, reason)

    def _abort(self) -> None:
        self.detach()
        self._loop.call_soon_threadsafe(self._close_now)

    # ---- on the connection's own loop --------------------------------------

    def _push(self, payloads: list[bytes]) -> None:
        self._pending.extend(payloads)
        self._start_sender()

    def _close_after_pending(self, code: int, reason: str) -> None:
        self._close_with = (code, reason)
        self._start_sender()

    def _close_now(self) -> None:
        self._pending.clear()
        self._close_after_pending(1011, "")

    def _start_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = self._loop.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while self._pending:
            payload = self._pending.popleft()
            try:
                await self._websocket.send(payload.decode())
            except Exception as exc:  # the peer is gone; its server unregisters it
                log.info("foreign client %d: send failed (%s)", self.client_id, exc)
                self._pending.clear()
                self._closing = True
                return
            with self._unsent_lock:
                self._unsent -= len(payload)
        if self._close_with is not None:
            await self._websocket.close(*self._close_with)

    def detach(self) -> None:
        """Forget the connection (closed, or its server saw it close); from any thread."""
        self._closing = True
        self._hub.detach(self.client_id)
