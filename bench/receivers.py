"""Frames a receiver core counts per second, Python vs compiled receivers, same byte stream.

    python bench/receivers.py --clients 100 --frames 20000 --repeat 3

A stand-in server (this process, CPU 0) answers the WebSocket upgrades, then writes one
prebuilt stream of server frames to every connection, round-robin in 64 KiB non-blocking
sends: no fan-out core, no framing, no publisher, so what is measured is the receivers.
Each kind of receiver (``agentcast.bench.receivers``, one process on CPU 1) counts every
frame in turn; the figure is frames over the receiver process's CPU time, split into user
and kernel time from /proc (the kernel's share is mostly copying bytes out of sockets,
which no receiver avoids). Streams:

- ``uniform``: 200-byte unstamped frames, the burst workload's stream;
- ``mixed``: unstamped frames of 30 .. 4,000 bytes in random order (agents' messages vary);
- ``stamped``: 200-byte frames that carry a send time, the latency workloads' stream, read
  on every connection by both kinds (the Python receivers then run ``StampCounter``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import statistics
import threading
import time

from agentcast.bench.harness import RECEIVER_CPU, SERVER_CPU, pin_to_cpu, raise_fd_limit
from agentcast.bench.messages import message
from agentcast.bench.receivers import RECEIVERS, ReceiverFleet

SEND_BYTES = 64 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
UPGRADE_REPLY = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes([0x81, size]) + payload
    if size < 65536:
        return bytes([0x81, 126]) + size.to_bytes(2, "big") + payload
    return bytes([0x81, 127]) + size.to_bytes(8, "big") + payload


def stream(kind: str, frames: int) -> bytes:
    """``frames`` server frames of the ``kind`` described in the module docstring."""
    if kind == "uniform":
        return frame(_json(message(0, 200))) * frames
    if kind == "mixed":
        rng = random.Random(16)
        return b"".join(frame(_json(message(i, rng.randint(100, 4000)))) for i in range(frames))
    return b"".join(frame(_json(message(i, 200, sent_at=time.monotonic()))) for i in range(frames))


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _cpu(pids: list[int]) -> tuple[float, float]:
    """User and kernel CPU seconds of ``pids`` so far."""
    user = kernel = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        user += int(fields[11]) / TICKS
        kernel += int(fields[12]) / TICKS
    return user, kernel


def measure(receiver: str, data: bytes, frames: int, clients: int) -> dict[str, float]:
    """One kind of receivers counts ``data`` on ``clients`` connections."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    fleet = ReceiverFleet(
        listener.getsockname()[1],
        clients,
        cpus=(RECEIVER_CPU,),
        sample_every=1 if b'{"t":' in data[:16] else 0,
        receiver=receiver,
    )
    connections: list[socket.socket] = []

    def accept() -> None:
        for _ in range(clients):
            conn, _ = listener.accept()
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(UPGRADE_REPLY)
            conn.setblocking(False)
            connections.append(conn)

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    fleet.start()
    acceptor.join()
    try:
        pids = fleet.pids
        user, kernel = _cpu(pids)
        started = time.monotonic()
        _send(connections, data)
        delivery = fleet.wait_for(frames, timeout=600)
        wall = time.monotonic() - started
        user_after, kernel_after = _cpu(pids)
    finally:
        fleet.stop()
        for conn in connections:
            conn.close()
        listener.close()
    if not delivery.complete:
        raise RuntimeError(f"the {receiver} receivers did not count every frame")
    user, kernel = user_after - user, kernel_after - kernel
    return {
        "frames_per_cpu_s": delivery.frames / delivery.cpu_seconds,
        "kernel_share": kernel / max(user + kernel, 1e-9),
        "receiver_cpu": delivery.cpu_seconds / wall,
    }


def _send(connections: list[socket.socket], data: bytes) -> None:
    """Write ``data`` to every connection, interleaved, as fast as they take it."""
    view = memoryview(data)
    selector = selectors.DefaultSelector()
    for conn in connections:
        selector.register(conn, selectors.EVENT_WRITE, [conn, 0])
    left = len(connections)
    while left:
        for key, _ in selector.select():
            state = key.data
            try:
                state[1] += state[0].send(view[state[1] : state[1] + SEND_BYTES])
            except BlockingIOError:
                continue
            if state[1] == len(data):
                selector.unregister(state[0])
                left -= 1
    selector.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20_000, help="per connection")
    parser.add_argument("--repeat", type=int, default=3, help="report the median")
    parser.add_argument("--streams", default="uniform,mixed,stamped")
    args = parser.parse_args()
    pin_to_cpu(SERVER_CPU)
    raise_fd_limit()
    print(f"{args.clients} connections x {args.frames:,} frames, median of {args.repeat}")
    print(f"{'stream':>8}  {'receiver':>8}  {'frames/CPU s':>13}  {'kernel':>6}  {'recv CPU':>8}")
    for kind in args.streams.split(","):
        data = stream(kind, args.frames)
        medians = {}
        for receiver in reversed(RECEIVERS):  # python first: the reference
            rounds = [
                measure(receiver, data, args.frames, args.clients) for _ in range(args.repeat)
            ]
            medians[receiver] = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            m = medians[receiver]
            print(
                f"{kind:>8}  {receiver:>8}  {m['frames_per_cpu_s']:>13,.0f}  "
                f"{m['kernel_share']:>6.0%}  {m['receiver_cpu']:>8.0%}"
            )
        ratio = medians["compiled"]["frames_per_cpu_s"] / medians["python"]["frames_per_cpu_s"]
        print(f"{kind:>8}  compiled / python: {ratio:.1f}x")


if __name__ == "__main__":
    main()
