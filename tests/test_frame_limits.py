"""Every frame a client sends counts against its rate, and no burst of frames leaves a
large read buffer behind: an unsolicited pong flood and an endless run of empty
continuations are closed 1008, fragmented messages still pass, and an idle connection
holds a read buffer bounded by ``max_message_size`` whatever it was sent before."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import websockets

from agentcast import Broadcaster
from broadcaster_process import BroadcasterProcess
from clients import parse_frames, raw_upgrade, run, wait_for
from test_rfc6455 import CONTINUATION, PING, PONG, TEXT, frame

FLOOD_FRAMES = 20_000  # 200 times the default burst of 100
PONG_FRAME = frame(PONG, b"")


def flood(sock: socket.socket, frames: bytes, count: int) -> None:
    """Send ``frames`` ``count`` times, reading nothing, or fewer if the server hangs up."""
    chunk = frames * 1000
    for _ in range(0, count, 1000):
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return


def close_code(sock: socket.socket, timeout: float = 5.0) -> int | None:
    """The code of the server's close frame; None if none comes within ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
            closes = [p for opcode, p in _frames(data) if opcode == 0x8]
            if closes:
                return int.from_bytes(closes[0][:2], "big")
    except (TimeoutError, ConnectionResetError):
        pass
    return None


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """The whole small frames (< 126 bytes) at the start of ``data``."""
    pos = 0
    while pos + 2 <= len(data) and pos + 2 + (data[pos + 1] & 0x7F) <= len(data):
        pos += 2 + (data[pos + 1] & 0x7F)
    return parse_frames(data[:pos])


def test_an_unsolicited_pong_flood_is_closed_1008(hub: Broadcaster) -> None:
    """It was never counted: 85 M pongs in 2 s, never closed."""
    sock = raw_upgrade(hub.port)
    try:
        flood(sock, PONG_FRAME, FLOOD_FRAMES)
        assert close_code(sock) == 1008
    finally:
        sock.close()
    run(wait_for(lambda: hub.stats()["dropped_clients_rate"] == 1, what="counted as rate"))


def test_a_flood_of_empty_continuations_is_closed_1008(hub: Broadcaster) -> None:
    """Empty fragments never grew the size check and were never counted: a message that
    never ends took the server's loop (a control client's RTT 0.5 -> 201 ms)."""
    sock = raw_upgrade(hub.port)
    try:
        sock.sendall(frame(TEXT, b"{", fin=False))
        flood(sock, frame(CONTINUATION, b"", fin=False), FLOOD_FRAMES)
        assert close_code(sock) == 1008
    finally:
        sock.close()
    run(wait_for(lambda: hub.stats()["dropped_clients_rate"] == 1, what="counted as rate"))


def test_fragmented_messages_within_the_rate_are_delivered_whole(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    """websockets sends an iterable as one message in fragments: 20 messages of 16
    fragments each (320 frames, over the 100-message burst) are each echoed whole."""
    hub: Broadcaster = hub_factory(on_message=lambda client, data: hub.send_json(client, data))
    fragments = [f'"{i:02}' + "x" * 1000 + '"' for i in range(16)]
    messages = [[f"[{n},", *fragments, "]"] for n in range(20)]

    async def exchange() -> list[str]:
        async with websockets.connect(f"ws://127.0.0.1:{hub.port}/") as ws:
            echoes = []
            for message in messages:
                await ws.send(message)
                echoes.append(await asyncio.wait_for(ws.recv(), 10))
            return echoes  # type: ignore[return-value]

    assert run(exchange()) == ["".join(message) for message in messages]
    assert hub.stats()["dropped_clients_rate"] == 0


CLIENTS = 10
BURST_BYTES = 8_000_000
BIG_PONG = frame(PONG, b"p" * 125)


def burst_then_idle(port: int) -> socket.socket:
    """A client that sends 8 MB of pongs and a ping in one go, then reads its pong: the
    server has read the whole burst, and the connection is idle."""
    sock = raw_upgrade(port)
    sock.sendall(BIG_PONG * (BURST_BYTES // len(BIG_PONG)) + frame(PING, b"done"))
    sock.settimeout(30)
    data = b""
    while not data.endswith(b"done"):
        data += sock.recv(1 << 16)
    assert parse_frames(data) == [(PONG, b"done")]
    return sock


def test_idle_clients_after_a_burst_of_frames_hold_little() -> None:
    """picows doubles its read buffer whenever a read fills it, and never shrinks it: 8 MB
    of pongs left 2.3 MiB per idle connection. Reads are now bounded, so what an idle
    connection holds is bounded by ``max_message_size`` (64 KiB: 112 KiB at most), not by
    what it was sent. The rate limit is off: the bound must not depend on it."""
    server = BroadcasterProcess(max_message_rate=0)
    try:
        idle = [raw_upgrade(server.port) for _ in range(CLIENTS)]
        base = server.status()["rss_kib"]
        bursting = [burst_then_idle(server.port) for _ in range(CLIENTS)]
        grown = server.status()["rss_kib"] - base
        for sock in idle + bursting:
            sock.close()
    finally:
        assert server.stop() == 0
    # The idle ones are in the base: what grew is what the bursts left (KiB).
    assert grown < CLIENTS * 256, grown
