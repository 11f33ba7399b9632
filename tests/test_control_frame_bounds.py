"""Pings count toward the message rate and pongs against the client's byte budget: a peer
that floods pings without reading the pongs is closed, and the server does not grow."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import websockets

from broadcaster_process import BroadcasterProcess
from clients import parse_frames, raw_upgrade, run, wait_for

PINGS = 300_000
PING = b"\x89\xfd" + bytes(4) + b"p" * 125  # masked (with a zero key), 125 bytes
PINGS_PER_WRITE = 1000


def flood_pings(sock: socket.socket) -> None:
    """Send ``PINGS`` pings, reading nothing, or fewer if the server hangs up first."""
    chunk = PING * PINGS_PER_WRITE
    for _ in range(0, PINGS, PINGS_PER_WRITE):
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return


def close_code(sock: socket.socket) -> int | None:
    """Read what the server sent until it hangs up; the code of its close frame, if any."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except ConnectionResetError:
        pass
    frames = parse_frames(data[: _whole_frames(data)])
    codes = [int.from_bytes(payload[:2], "big") for opcode, payload in frames if opcode == 0x8]
    return codes[0] if codes else None


def _whole_frames(data: bytes) -> int:
    """The length of the complete frames at the start of ``data`` (an abort may cut one)."""
    pos = 0
    while pos + 2 <= len(data):
        length, header = data[pos + 1] & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        if pos + header + length > len(data):
            break
        pos += header + length
    return pos


async def control_pings(url: str, done: threading.Event) -> int:
    """A well-behaved client pinging while the flood goes on: every pong comes back."""
    answered = 0
    async with websockets.connect(url) as ws:
        while not done.is_set() or answered < 5:
            await asyncio.wait_for(await ws.ping(), 5)
            answered += 1
            await asyncio.sleep(0.01)
    return answered


@pytest.mark.parametrize(
    ("options", "expected"),
    [({}, "rate"), ({"max_message_rate": 0}, "budget")],
    ids=["rate", "budget"],
)
def test_a_ping_flood_is_closed_and_the_server_does_not_grow(options: dict, expected: str) -> None:
    server = BroadcasterProcess(**options)
    try:
        base = server.status()["rss_kib"]
        sock = raw_upgrade(server.port, rcvbuf=4096)
        done = threading.Event()
        result: dict[str, int] = {}

        def flood() -> None:
            flood_pings(sock)
            result["rss_kib"] = server.status()["rss_kib"]  # still connected, pongs unread
            done.set()

        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            assert run(control_pings(server.url, done)) >= 5
        finally:
            flooder.join(60)
        code = close_code(sock)
        sock.close()
        run(wait_for(lambda: server.status()["clients"] == 0, 20, "the flooder gone"))
        stats = server.status()
    finally:
        assert server.stop() == 0
    # 300,000 unread pongs would be 38 MB: bounded by the 4 MiB budget (KiB here).
    assert result["rss_kib"] - base < 16 * 1024, (base, result)
    if expected == "rate":
        assert code == 1008
    else:
        assert stats["dropped_clients"] == 1  # over budget from pongs: 1013
