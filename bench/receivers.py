"""Raw WebSocket receivers in a child process, as cheap per frame as Python allows.

The fan-out benchmark must time the server, not its clients, so the receivers:

- live in their own process (spawn, so no copy of the server's threads) pinned
  to ``RECEIVER_CPU`` while the server stays on ``SERVER_CPU``;
- speak just enough WebSocket: a hand-written HTTP upgrade with a fixed key and
  no extensions (so no compression is negotiated with either server), then
  they only walk frame headers (``frames.count_frames``), never payloads;
- read every connection through one selector with non-blocking sockets, and
  nap briefly when the server trickles frames (see ``_Counting``);
- report their own CPU time, so a run where they were the limit shows up as a
  receiver CPU share near 100 %.

Both servers run with pings off, so every frame counted is a data frame.
Times are ``time.monotonic()``, which is CLOCK_MONOTONIC on Linux: the same
clock in every process, so the parent can subtract its first-publish time from
the last-frame time reported here.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import selectors
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from frames import FrameCounter
from harness import RECEIVER_CPU, pin_to_cpu, raise_fd_limit

HOST = "127.0.0.1"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: the servers only echo its digest
RECV_BYTES = 256 * 1024
STARTUP_TIMEOUT = 120.0
REPLY_GRACE = 10.0  # how much longer than its own deadline the child may take to answer
TRICKLE_BYTES = 4096  # reads smaller than this on average mean the server sends frame by frame
NAP_SHARE = 0.005  # a nap is at most this share of the burst so far ...
MAX_NAP = 0.01  # ... and at most this long (seconds)


@dataclass(frozen=True)
class Delivery:
    """What the receivers saw for one ``ReceiverFleet.wait_for`` call."""

    complete: bool  # every connection got all the frames asked for before the deadline
    frames: int  # frames counted over all connections since the previous call
    last_frame_at: float  # time.monotonic() when the last of them arrived
    cpu_seconds: float  # receiver process CPU time since the previous call


def open_websocket(port: int, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """Connect and upgrade by hand; returns the non-blocking socket and any early frame bytes."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection during the upgrade")
            response += chunk
        head, _, early = response.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if status.split(b" ")[1:2] != [b"101"]:
            raise ConnectionError(f"upgrade refused: {status.decode(errors='replace')}")
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock, early


def _serve(port: int, clients: int, control: Connection) -> None:
    """Child process: connect, report ready, then count frames until told to stop."""
    pin_to_cpu(RECEIVER_CPU)
    raise_fd_limit()
    connections: list[tuple[socket.socket, FrameCounter]] = []
    try:
        for _ in range(clients):
            sock, early = open_websocket(port)
            counter = FrameCounter()
            counter.feed(early, len(early))
            connections.append((sock, counter))
    except OSError as exc:
        for sock, _ in connections:
            sock.close()
        control.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    control.send(("ready", time.process_time()))
    try:
        _Counting(connections, control).run()
    finally:
        for sock, _ in connections:
            sock.close()


class _Counting:
    """The child's loop: drain every socket, answer each ("await", total, timeout) request.

    An answer is sent once every connection has ``total`` frames in full, or at
    the deadline. Trickling traffic (a server that writes each frame to each
    client separately) would cost one wake-up and one ``recv`` per frame, as
    much CPU as the server spends sending it; so when a poll brings only small
    reads, the loop naps to let frames pile up. The nap is at most
    ``NAP_SHARE`` of the time since the burst's first bytes, which bounds what
    it can add to the measured time.
    """

    def __init__(
        self, connections: list[tuple[socket.socket, FrameCounter]], control: Connection
    ) -> None:
        self.counters = [counter for _, counter in connections]
        self.control = control
        self.selector = selectors.DefaultSelector()
        for sock, counter in connections:
            self.selector.register(sock, selectors.EVENT_READ, counter)
        self.selector.register(control, selectors.EVENT_READ)
        self.buffer = bytearray(RECV_BYTES)
        self.target: int | None = None
        self.deadline = 0.0
        self.waiting: set[FrameCounter] = set()
        self.first_bytes_at: float | None = None  # of the current burst

    def run(self) -> None:
        while True:
            timeout = None if self.target is None else max(0.0, self.deadline - time.monotonic())
            reads = read_bytes = 0
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    if not self._command():
                        return
                    continue
                size = self._read(key.fileobj, key.data)
                reads += 1
                read_bytes += size
            if self.target is not None and (not self.waiting or time.monotonic() >= self.deadline):
                self._report()
            elif reads and read_bytes < reads * TRICKLE_BYTES and self.first_bytes_at is not None:
                time.sleep(min(MAX_NAP, NAP_SHARE * (time.monotonic() - self.first_bytes_at)))

    def _command(self) -> bool:
        """Take the parent's next request; False means stop."""
        command = self.control.recv()
        if command[0] == "stop":
            return False
        _, self.target, seconds = command
        self.deadline = time.monotonic() + seconds
        self.waiting = {c for c in self.counters if not c.has(self.target)}
        return True

    def _read(self, sock: socket.socket, counter: FrameCounter) -> int:
        try:
            size = sock.recv_into(self.buffer)
        except BlockingIOError:
            return 0
        except ConnectionError:
            size = 0
        if not size:  # closed by the server: it stays in `waiting`, the run is incomplete
            self.selector.unregister(sock)
            return 0
        if self.first_bytes_at is None:
            self.first_bytes_at = time.monotonic()
        counter.feed(self.buffer, size)
        if counter in self.waiting and counter.has(self.target):
            self.waiting.discard(counter)
        return size

    def _report(self) -> None:
        self.control.send(
            (
                "done",
                not self.waiting,
                sum(c.frames for c in self.counters),
                max(c.last_at for c in self.counters),
                time.process_time(),
            )
        )
        self.target = self.first_bytes_at = None


class ReceiverFleet:
    """``clients`` raw WebSocket connections to ``127.0.0.1:port``, held by a child process."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.clients = clients
        self._frames = 0
        self._cpu = 0.0
        self._control: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> ReceiverFleet:
        """Spawn the child; return once every connection is upgraded."""
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(self.port, self.clients, child), name="receivers", daemon=True
        )
        self._process.start()
        child.close()
        status, value = self._reply(STARTUP_TIMEOUT)
        if status != "ready":
            raise RuntimeError(f"the receivers could not connect: {value}")
        self._cpu = value
        return self

    def wait_for(self, total: int, timeout: float) -> Delivery:
        """Block until every connection has received ``total`` frames since it connected.

        Gives up after ``timeout`` seconds with ``complete=False``. Frames that
        arrived before the call count too: the child remembers when the last did.
        """
        assert self._control is not None, "start() first"
        self._control.send(("await", total, timeout))
        _, complete, frames, last_frame_at, cpu = self._reply(timeout + REPLY_GRACE)
        delivery = Delivery(complete, frames - self._frames, last_frame_at, cpu - self._cpu)
        self._frames, self._cpu = frames, cpu
        return delivery

    def _reply(self, timeout: float) -> tuple:
        assert self._control is not None and self._process is not None
        if not self._control.poll(timeout):
            raise TimeoutError(f"the receiver process did not answer within {timeout:.0f} s")
        try:
            return self._control.recv()
        except EOFError:
            self._process.join(1.0)
            raise RuntimeError(
                f"the receiver process died (exit code {self._process.exitcode})"
            ) from None

    def stop(self) -> None:
        """Close every connection and end the child (killed if it does not exit in time)."""
        if self._process is None or self._control is None:
            return
        with contextlib.suppress(OSError):  # the child may be gone already
            self._control.send(("stop",))
        self._process.join(10.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._control.close()
        self._process = self._control = None
