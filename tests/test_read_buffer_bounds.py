"""What one large message leaves behind: picows' read buffer grows to the largest frame a
connection received and never shrinks (it is internal to picows, out of our reach), so
the default ``max_message_size`` is 64 KiB: far more than a MemGPT user message needs."""

from __future__ import annotations

import asyncio
import contextlib

import websockets
from websockets.exceptions import ConnectionClosed

from broadcaster_process import BroadcasterProcess
from clients import run, wait_for

CLIENTS = 40


async def one_large_message_each(server: BroadcasterProcess, size: int) -> tuple[int, list]:
    """``CLIENTS`` connections each send one ``size``-byte message and go idle: the server's
    RSS (KiB) while they are connected, and their close codes (None: still open)."""
    connections = [await websockets.connect(server.url) for _ in range(CLIENTS)]
    try:
        for ws in connections:
            with contextlib.suppress(ConnectionClosed):
                await ws.send("x" * size)
        await asyncio.gather(*(_closed_or_idle(ws) for ws in connections))
        await wait_for(
            lambda: server.status()["clients"] == sum(ws.close_code is None for ws in connections)
        )
        return server.status()["rss_kib"], [ws.close_code for ws in connections]
    finally:
        await asyncio.gather(*(ws.close() for ws in connections))


async def _closed_or_idle(ws: websockets.ClientConnection) -> None:
    """Closed by the server (1009), or nothing comes: idle and open."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.5)


def test_idle_clients_after_one_large_message_each_hold_little() -> None:
    """40 clients that each sent one ~1 MB message held 1.9 MB each before (+74 MB)."""
    server = BroadcasterProcess()
    try:
        base = server.status()["rss_kib"]
        rss, codes = [], []
        # The idle rounds first: the refused ones leave freed memory the heap may keep
        # (0.6 to 28 MiB between runs), which would read as the idle clients' own.
        for size in (60_000, 60_000, 1_000_000):
            used, closed = run(one_large_message_each(server, size))
            rss.append(used - base)
            codes.append(closed)
            run(wait_for(lambda: server.status()["clients"] == 0, 20, "clients gone"))
    finally:
        assert server.stop() == 0
    # Before the 64 KiB default, a 1 MB message was taken and each idle client held 1.9 MB
    # after it (74 MB for 40). Now an idle client that sent the largest message allowed
    # holds its read buffer (128 KiB at most) and little more, round after round, and a
    # larger message is refused (1009).
    assert max(rss[:2]) < CLIENTS * 256, rss
    assert codes[0] == codes[1] == [None] * CLIENTS  # within the limit: served, and idle
    assert codes[2] == [1009] * CLIENTS  # over the 64 KiB default: refused
