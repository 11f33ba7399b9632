"""Raw WebSocket receivers in child processes, compiled, with Python's as the reference.

A benchmark must time the server, not its clients, so the receivers:

- live in their own processes (spawned, so no copy of the parent's threads),
  each pinned to a CPU the server does not use, with the clients split
  between them;
- speak just enough WebSocket: a hand-written HTTP upgrade with a fixed key and
  no extensions (so no compression is negotiated), then only count frames;
- come in two kinds (``receiver=``): ``compiled`` (``agentcast._receiver``) holds a
  process's connections on one epoll and walks frames and reads every send time in
  C, so every delivery of every connection is a latency sample; ``python``, the
  reference, reads through a selector and walks frame headers only
  (``frames.count_frames``), except on the sampled connections that measure
  latency (``frames.StampCounter``), which get a process of their own so that they
  never wait behind the others;
- for bursts, nap briefly while the server trickles frames (see ``_Selecting``);
- report their own CPU time, added up per CPU (several children may share
  one), so a run where they were the limit shows up as a receiver CPU share
  near 100 %.

A server spec with TLS (``agentcast:tls``) hands over the PEM of its throwaway CA; the
receivers then upgrade over TLS trusting only that CA, and decrypt every record
already in before counting (``_Selecting._receive_tls``). TLS is read by a Python
loop with either kind: with the compiled receivers, Python decrypts what a wake-up
brings and the C walker counts it (``_CompiledOverTLS``), so TLS costs a Python call
per read, but still none per frame.

Servers run with pings off, so every frame counted is a data frame. Times are
``time.monotonic()``, which is CLOCK_MONOTONIC on Linux: the same clock in
every process, so the parent can subtract the server's first-publish time from
the last-frame time reported here.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import selectors
import socket
import ssl
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from agentcast._receiver import Ran, Receiver
from agentcast.bench.frames import FrameCounter, StampCounter
from agentcast.bench.harness import RECEIVER_CPU, ignore_interrupts, pin_to_cpu, raise_fd_limit
from agentcast.bench.histogram import CLIENT_BITS, Histogram, micros

HOST = "127.0.0.1"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: servers only echo its digest
RECV_BYTES = 256 * 1024
STARTUP_TIMEOUT = 120.0
CONNECT_STEP = 100  # connections a child opens per request (see ReceiverFleet.start)
REPLY_GRACE = 10.0  # how much longer than its own deadline a child may take to answer
TRICKLE_BYTES = 4096  # reads smaller than this on average mean the server sends frame by frame
TLS_RECORD = 16 * 1024  # the largest TLS record's plaintext
NAP_SHARE = 0.005  # a nap is at most this share of the burst so far ...
MAX_NAP = 0.01  # ... and at most this long (seconds)
RECEIVERS = ("compiled", "python")


@dataclass(frozen=True)
class Delivery:
    """What the receivers saw for one ``ReceiverFleet.wait_for`` call."""

    complete: bool  # every connection got all the frames asked for before the deadline
    frames: int  # frames counted over all connections since the previous call
    bytes: int  # bytes received (headers included) over all connections since the previous call
    last_frame_at: float  # time.monotonic() when the last of them arrived
    cpu_seconds: float  # receiver CPU time on the busiest receiver CPU since the previous call


@dataclass(frozen=True)
class Latencies:
    """Publish-to-receive latencies since the previous ``ReceiverFleet.latencies`` call."""

    histogram: Histogram  # every sample over all receiver processes, µs
    worst_client_p99_us: float  # the highest p99 of any one connection; NaN without samples


@dataclass(frozen=True)
class Snapshot:
    """Running totals over all connections, for watching a server the benchmark does not drive."""

    frames: int
    bytes: int
    cpu_seconds: tuple[float, ...]  # receiver CPU time on each receiver CPU, since they started
    at: float  # time.monotonic()


def open_websocket(
    port: int,
    host: str = HOST,
    path: str = "/",
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> tuple[socket.socket, bytes]:
    """Connect (over TLS with ``tls``) and upgrade by hand; returns the non-blocking socket
    and any early frame bytes."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
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


@dataclass(frozen=True)
class _Share:
    """What one child connects to, how it reads, and where it runs."""

    host: str
    port: int
    path: str
    stamped: bool  # its connections measure latency
    cpu: int | None
    nap: float  # at most this long (seconds; 0: never)
    ca_pem: str | None  # the server's CA: connect over TLS
    compiled: bool  # the compiled receiver walks the frames


def _serve(share: _Share, control: Connection) -> None:
    """Child process: open connections when told to ("connect", n), then count until "stop"."""
    ignore_interrupts()
    pin_to_cpu(share.cpu)
    raise_fd_limit()
    tls = None if share.ca_pem is None else ssl.create_default_context(cadata=share.ca_pem)
    counting: _Counting
    if not share.compiled:
        counting = _Python(control, share.nap, share.stamped, tls is not None)
    elif tls is not None:
        counting = _CompiledOverTLS(control, share.nap)
    else:
        counting = _Compiled(control, share.nap)
    sockets: list[socket.socket] = []
    control.send(("spawned",))
    try:
        while (command := control.recv())[0] == "connect":
            try:
                for _ in range(command[1]):
                    sock, early = open_websocket(share.port, share.host, share.path, tls=tls)
                    sockets.append(sock)
                    counting.add(sock, early)
            except OSError as exc:
                control.send(("error", f"{type(exc).__name__}: {exc}"))
                return
            control.send(("connected", time.process_time()))
        if command[0] == "count":
            counting.run()
    finally:
        for sock in sockets:
            sock.close()


class _Counting:
    """A child's loop: count what arrives, answer the parent's requests.

    ``("await", total, seconds)`` is answered once every connection has
    ``total`` frames in full, or at the deadline; ``("latencies",)`` with the
    histogram of the samples since the last such request (raw counts, which
    the parent merges exactly) and the worst connection's p99.
    """

    def __init__(self, control: Connection) -> None:
        self.control = control
        self.target: int | None = None
        self.deadline = math.inf

    def add(self, sock: socket.socket, early: bytes) -> None:
        """Count a new connection's frames, starting with the bytes of its upgrade reply."""
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError

    def _frames(self) -> int:
        raise NotImplementedError

    def _bytes(self) -> int:
        raise NotImplementedError

    def _await(self, target: int | None) -> None:
        """Start waiting for ``target`` frames on every connection (None: stop waiting)."""
        raise NotImplementedError

    def _complete(self) -> bool:
        raise NotImplementedError

    def _last_at(self) -> float:
        raise NotImplementedError

    def _take_latencies(self) -> tuple[bytes, float]:
        """The run's histogram counts and the worst connection's p99 (µs, NaN: none)."""
        raise NotImplementedError

    def _command(self) -> bool:
        """Take the parent's next request; False means stop."""
        command = self.control.recv()
        if command[0] == "stop":
            return False
        if command[0] == "latencies":
            self.control.send(("latencies", *self._take_latencies()))
        elif command[0] == "snapshot":
            self.control.send(("snapshot", self._frames(), self._bytes(), time.process_time()))
        else:
            _, self.target, seconds = command
            self.deadline = time.monotonic() + seconds
            self._await(self.target)
        return True

    def _report(self) -> None:
        self.control.send(
            (
                "done",
                self._complete(),
                self._frames(),
                self._last_at(),
                self._bytes(),
                time.process_time(),
            )
        )
        self.target = None
        self.deadline = math.inf
        self._await(None)


class _CompiledCounts:
    """What the compiled receiver counted, for the loops that use it (a mixin)."""

    receiver: Receiver

    def _frames(self) -> int:
        return self.receiver.frames

    def _bytes(self) -> int:
        return self.receiver.bytes

    def _await(self, target: int | None) -> None:
        self.receiver.await_frames(-1 if target is None else target)

    def _complete(self) -> bool:
        return not self.receiver.waiting

    def _last_at(self) -> float:
        return self.receiver.last_at

    def _take_latencies(self) -> tuple[bytes, float]:
        counts, worst = self.receiver.take_latencies()
        return counts, float(worst) if worst >= 0 else math.nan


class _Compiled(_CompiledCounts, _Counting):
    """The compiled receiver's own epoll loop: Python only between its runs (see
    ``_receiver``)."""

    def __init__(self, control: Connection, nap: float) -> None:
        super().__init__(control)
        self.receiver = Receiver(control.fileno(), nap, NAP_SHARE)

    def add(self, sock: socket.socket, early: bytes) -> None:
        self.receiver.feed(self.receiver.add(sock.fileno()), early, time.monotonic())

    def run(self) -> None:
        while True:
            ran = self.receiver.run(self.deadline)
            if ran == Ran.RUN_CONTROL:
                if not self._command():
                    return
            elif ran != Ran.RUN_INTERRUPTED and self.target is not None:
                self._report()


class _Selecting(_Counting):
    """A loop in Python that drains every socket through a selector, for the Python
    receivers and for TLS (which only Python's ``ssl`` decrypts here).

    Trickling traffic (a server that writes each frame to each client
    separately) would cost one wake-up and one ``recv`` per frame, as much CPU
    as the server spends sending it; so with ``nap`` set, when a poll brings
    only small reads, the loop naps to let frames pile up. The nap is at most
    ``NAP_SHARE`` of the time since the burst's first bytes, which bounds what
    it can add to a burst's measured time. Where latency is measured the loop
    never naps and reads connections in the order they became readable.
    """

    def __init__(self, control: Connection, nap: float, tls: bool) -> None:
        super().__init__(control)
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ)
        self.buffer = bytearray(RECV_BYTES)
        self.view = memoryview(self.buffer)
        self._receive = self._receive_tls if tls else self._receive_plain
        self.nap = nap
        self.first_bytes_at: float | None = None  # of the current burst

    def _track(self, early: bytes) -> object:
        """Start counting a connection from its early bytes; returns what ``_walk`` gets."""
        raise NotImplementedError

    def _walk(self, key: object, size: int) -> None:
        """Count the ``size`` bytes just read into the buffer for the connection ``key``."""
        raise NotImplementedError

    def add(self, sock: socket.socket, early: bytes) -> None:
        self.selector.register(sock, selectors.EVENT_READ, self._track(early))

    def run(self) -> None:
        while True:
            timeout = None if self.target is None else max(0.0, self.deadline - time.monotonic())
            reads = read_bytes = 0
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    if not self._command():
                        return
                    continue
                size = self._read(key.fileobj, key.data)  # type: ignore[arg-type]
                reads += 1
                read_bytes += size
            if self.target is not None and (self._complete() or time.monotonic() >= self.deadline):
                self._report()
            elif (
                self.nap
                and reads
                and read_bytes < reads * TRICKLE_BYTES
                and self.first_bytes_at is not None
            ):
                time.sleep(min(self.nap, NAP_SHARE * (time.monotonic() - self.first_bytes_at)))

    def _report(self) -> None:
        super()._report()
        self.first_bytes_at = None

    def _read(self, sock: socket.socket, key: object) -> int:
        try:
            size = self._receive(sock)
        except (BlockingIOError, ssl.SSLWantReadError):
            return 0
        except (ConnectionError, ssl.SSLError):
            size = 0
        if not size:  # closed by the server: it stays waiting, the run is incomplete
            self.selector.unregister(sock)
            return 0
        if self.first_bytes_at is None:
            self.first_bytes_at = time.monotonic()
        self._walk(key, size)
        return size

    def _receive_plain(self, sock: socket.socket) -> int:
        return sock.recv_into(self.buffer)

    def _receive_tls(self, sock: socket.socket) -> int:
        """Every record already in, decrypted into one buffer: a TLS read returns one record
        (16 KiB at most), and counting each on its own would cost the receivers more than
        the plain reads they are compared with."""
        size = sock.recv_into(self.buffer)
        while size and size <= RECV_BYTES - TLS_RECORD:
            try:
                more = sock.recv_into(self.view[size:])
            except ssl.SSLWantReadError:
                break
            if not more:
                break
            size += more
        return size


class _CompiledOverTLS(_CompiledCounts, _Selecting):
    """TLS for the compiled receiver: Python decrypts each ready connection's records (one
    Python read per wake-up), the compiled receiver walks and stamps what it decrypted."""

    def __init__(self, control: Connection, nap: float) -> None:
        super().__init__(control, nap, tls=True)
        self.receiver = Receiver()

    def _track(self, early: bytes) -> object:
        index = self.receiver.add()
        self.receiver.feed(index, early, time.monotonic())
        return index

    def _walk(self, key: object, size: int) -> None:
        self.receiver.feed(key, self.view[:size], time.monotonic())  # type: ignore[arg-type]


class _Python(_Selecting):
    """The reference: frame headers walked in Python (``frames.FrameCounter``), and on the
    sampled connections every payload's send time read (``frames.StampCounter``)."""

    def __init__(self, control: Connection, nap: float, stamped: bool, tls: bool) -> None:
        super().__init__(control, nap, tls)
        self.stamped = stamped
        self.counters: list[FrameCounter] = []
        self.received = 0
        self.waiting: set[FrameCounter] = set()

    def _track(self, early: bytes) -> object:
        counter = StampCounter(array("d")) if self.stamped else FrameCounter()
        counter.feed(early, len(early))
        self.received += len(early)
        self.counters.append(counter)
        return counter

    def _walk(self, key: object, size: int) -> None:
        assert isinstance(key, FrameCounter)
        self.received += size
        key.feed(self.buffer, size)
        if key in self.waiting and key.has(self.target):  # type: ignore[arg-type]
            self.waiting.discard(key)

    def _frames(self) -> int:
        return sum(c.frames for c in self.counters)

    def _bytes(self) -> int:
        return self.received

    def _await(self, target: int | None) -> None:
        self.waiting = set() if target is None else {c for c in self.counters if not c.has(target)}

    def _complete(self) -> bool:
        return not self.waiting

    def _last_at(self) -> float:
        return max(c.last_at for c in self.counters)

    def _take_latencies(self) -> tuple[bytes, float]:
        """Each sampled connection's latencies into its own small histogram (for its p99)
        and the run's, rounded as the compiled receiver rounds them."""
        run, p99s = Histogram(), []
        for counter in self.counters:
            if isinstance(counter, StampCounter) and counter.latencies:
                own = Histogram(CLIENT_BITS)
                for seconds in counter.latencies:
                    value = micros(seconds)
                    run.record(value)
                    own.record(value)
                p99s.append(own.percentile(0.99))
                del counter.latencies[:]
        return run.counts.tobytes(), max(p99s, default=math.nan)


def sampled_connections(clients: int, every: int) -> list[bool]:
    """Which connections measure latency: every ``every``-th and the last to connect.

    The last connection matters most: servers write clients in connection
    order, so it gets each message last. ``every=0`` samples none.
    """
    if not every:
        return [False] * clients
    return [i % every == 0 or i == clients - 1 for i in range(clients)]


class _Child:
    """The parent's handle on one receiver process."""

    def __init__(self, share: _Share) -> None:
        context = multiprocessing.get_context("spawn")
        self.control, child_end = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(share, child_end), name="receivers", daemon=True
        )
        self.process.start()
        child_end.close()
        self.cpu_key = share.cpu if share.cpu is not None else id(self)  # unpinned: on its own
        self.frames = self.bytes = 0
        self.cpu = 0.0

    def ask(self, *command: Any, timeout: float) -> tuple[Any, ...]:
        self.control.send(command)
        return self.reply(timeout)

    def reply(self, timeout: float) -> tuple[Any, ...]:
        if not self.control.poll(timeout):
            raise TimeoutError(f"a receiver process did not answer within {timeout:.0f} s")
        try:
            reply: tuple[Any, ...] = self.control.recv()
        except EOFError:
            self.process.join(1.0)
            raise RuntimeError(
                f"a receiver process died (exit code {self.process.exitcode})"
            ) from None
        if reply[0] == "error":
            raise RuntimeError(f"the receivers could not connect: {reply[1]}")
        return reply

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # the child may be gone already
            self.control.send(("stop",))
        self.process.join(10.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.control.close()


class ReceiverFleet:
    """``clients`` raw WebSocket connections to ``host:port``, held by ``processes`` children.

    The parent tells the children in turn how many connections to open, so
    the order in which the server sees them (and usually writes them) is the
    fleet's plan: blocks of consecutive clients per child. ``nap`` lets the
    children batch trickling reads. ``sample_every`` > 0 asks for latencies
    (see ``latencies``): the compiled receivers then take them from every
    delivery of every connection, and none of them naps; the Python ones from
    every n-th connection and the last, held by one more child, which never
    naps, and opened in their place in the order. ``ca_pem`` (the server's CA)
    makes every connection TLS.
    """

    def __init__(
        self,
        port: int,
        clients: int,
        *,
        host: str = HOST,
        path: str = "/",
        processes: int = 1,
        cpus: Sequence[int | None] = (RECEIVER_CPU,),
        sample_every: int = 0,
        nap: bool = True,
        ca_pem: str | None = None,
        receiver: str = "compiled",
    ) -> None:
        if receiver not in RECEIVERS:
            raise ValueError(f"receiver must be one of {RECEIVERS}, not {receiver!r}")
        self.port, self.host, self.path = port, host, path
        self.compiled = receiver == "compiled"
        self.ca_pem = ca_pem
        self.clients = clients
        self.processes = processes
        self.cpus = cpus
        self.sample_every = sample_every
        self.nap = nap
        self._children: list[_Child] = []

    def _plan(self) -> tuple[list[_Share], list[tuple[int, int]]]:
        """The children, and the connection order as (child index, how many) runs."""
        every = bool(self.compiled and self.sample_every)  # latency on every connection
        sampled = sampled_connections(self.clients, 0 if self.compiled else self.sample_every)
        unsampled = self.clients - sum(sampled)
        bulk = min(self.processes, unsampled)  # every child holds at least one connection
        nap = MAX_NAP if self.nap and not every else 0.0
        shares = [self._share(every, self._cpu(i), nap) for i in range(bulk)]
        if any(sampled):
            shares.append(self._share(True, self._cpu(bulk), 0.0))
        per_child, extra = divmod(unsampled, max(bulk, 1))
        quotas = [per_child + (i < extra) for i in range(bulk)]
        runs: list[tuple[int, int]] = []
        child = 0
        for is_sampled in sampled:
            if is_sampled:
                owner = bulk
            else:
                while not quotas[child]:
                    child += 1
                quotas[child] -= 1
                owner = child
            if runs and runs[-1][0] == owner:
                runs[-1] = (owner, runs[-1][1] + 1)
            else:
                runs.append((owner, 1))
        return shares, runs

    def _share(self, stamped: bool, cpu: int | None, nap: float) -> _Share:
        return _Share(
            self.host, self.port, self.path, stamped, cpu, nap, self.ca_pem, self.compiled
        )

    def _cpu(self, index: int) -> int | None:
        return self.cpus[index % len(self.cpus)] if self.cpus else None

    def start(self, connected: Callable[[int], None] | None = None) -> ReceiverFleet:
        """Spawn the children together, open the connections in order; return once all are up.

        ``connected(n)`` is told of every ``CONNECT_STEP`` (or fewer) connections opened, so
        that opening thousands (each a TLS handshake, with ``ca_pem``) shows progress.
        """
        shares, runs = self._plan()
        try:
            self._children = [_Child(share) for share in shares]
            for child in self._children:
                child.reply(STARTUP_TIMEOUT)  # spawned
            for index, count in runs:
                child = self._children[index]
                for step in range(0, count, CONNECT_STEP):
                    opening = min(CONNECT_STEP, count - step)
                    child.cpu = child.ask("connect", opening, timeout=STARTUP_TIMEOUT)[1]
                    if connected is not None:
                        connected(opening)
            for child in self._children:
                child.control.send(("count",))
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for(self, total: int, timeout: float) -> Delivery:
        """Block until every connection has received ``total`` frames since it connected.

        Gives up after ``timeout`` seconds with ``complete=False``. Frames that
        arrived before the call count too: the children remember when the last did.
        """
        for child in self._children:
            child.control.send(("await", total, timeout))
        complete, frames, size, last_at = True, 0, 0, 0.0
        per_cpu: dict[int, float] = {}
        for child in self._children:
            _, done, child_frames, child_last_at, child_bytes, cpu = child.reply(
                timeout + REPLY_GRACE
            )
            complete = complete and done
            frames += child_frames - child.frames
            size += child_bytes - child.bytes
            last_at = max(last_at, child_last_at)
            per_cpu[child.cpu_key] = per_cpu.get(child.cpu_key, 0.0) + cpu - child.cpu
            child.frames, child.bytes, child.cpu = child_frames, child_bytes, cpu
        return Delivery(complete, frames, size, last_at, max(per_cpu.values()))

    def latencies(self) -> Latencies:
        """Publish-to-receive latencies the connections saw since the last call, merged."""
        histogram, p99s = Histogram(), []
        for child in self._children:
            _, counts, worst = child.ask("latencies", timeout=REPLY_GRACE)
            histogram.merge(Histogram(counts=counts))
            if not math.isnan(worst):
                p99s.append(worst)
        return Latencies(histogram, max(p99s, default=math.nan))

    def snapshot(self) -> Snapshot:
        """Frames and bytes received so far over all connections."""
        frames = size = 0
        per_cpu: dict[int, float] = {}
        for child in self._children:
            _, child_frames, child_bytes, cpu = child.ask("snapshot", timeout=REPLY_GRACE)
            frames += child_frames
            size += child_bytes
            per_cpu[child.cpu_key] = per_cpu.get(child.cpu_key, 0.0) + cpu
        return Snapshot(frames, size, tuple(per_cpu.values()), time.monotonic())

    @property
    def pids(self) -> list[int]:
        """The receiver processes' ids (to read their CPU time from /proc)."""
        return [child.process.pid for child in self._children if child.process.pid is not None]

    def stop(self) -> None:
        """Close every connection and end the children (killed if they do not exit in time)."""
        for child in self._children:
            child.stop()
        self._children = []
