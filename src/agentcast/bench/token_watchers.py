"""The ``tokens`` workload's watchers: native-protocol clients that check every frame.

Each receiver CPU gets a spawned process running uvloop with picows clients (one Python
callback per frame, no coroutine per frame, as in ``chat``). A watcher knows its agent's
stream (``token_script.agent_stream``, made from the same seed as the publisher's) and
checks as frames arrive: ``seq`` (or a merged frame's ``from_seq``) follows the last one
with no gap or repeat, each delta's text continues its message's text where the last left
off, every boundary comes once. A keeper (a watcher that reads as fast as it can) keeps the
arrival time of each delta for the latency; a laggard reads at a fraction of its stream's
bytes a second: a leaky bucket that pauses the transport's reading (``pause_reading``) until
the bytes it took are paid for, with a small receive buffer (``LAGGARD_RCVBUF``) so that the
kernel does not read ahead for it. Laggards stop pacing themselves at a time the parent
gives (``unthrottle_at``), then read at full speed: a run always ends.

Connections open one at a time, in the order of the plan, so that the k-th to reach the
server is the k-th of the plan (the server's ``route`` files it under its agent), and only
to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import socket
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from agentcast.bench.harness import ignore_interrupts, pin_to_cpu, raise_fd_limit
from agentcast.bench.histogram import CLIENT_BITS, Histogram, micros
from agentcast.bench.token_script import agent_stream, frame_bytes, stream_texts

HOST = "127.0.0.1"
PATH = "/?protocol=agentcast"  # agentcast's native protocol; the other peers ignore the query
LAGGARD_RCVBUF = 4096  # bytes: SO_RCVBUF of a laggard's socket (the kernel doubles it)
PACE_SLACK = 0.005  # seconds a laggard may read ahead of its pace before it pauses
CONNECT_TIMEOUT = 30.0  # seconds for one upgrade (a shared, busy machine is slow)
REPLY_GRACE = 30.0  # seconds a child may take beyond what it was asked to wait
STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class Stream:
    """What the watchers of one agent are owed: the stream's seed and length, and the pace of
    its laggards (bytes/s)."""

    at_least: int
    seed: int
    laggard_rate: float


class Expected:
    """One agent's stream as its watchers check it (shared by them, read only)."""

    def __init__(self, agent: str, stream: Stream) -> None:
        events = agent_stream(agent, stream.at_least, stream.seed)
        self.texts = stream_texts(events)
        self.final = len(events)  # the last seq
        self.boundaries = sum(1 for e in events if e["type"] != "message_delta")
        self.laggard_rate = stream.laggard_rate


class StreamCheck:
    """What one watcher's events add up to, checked one event at a time (no I/O): seq (a
    merged frame's ``from_seq``) follows the last with no gap or repeat, each delta continues
    its message's text, and, with ``timed``, each delta's arrival for its latency."""

    def __init__(self, expected: Expected, timed: bool) -> None:
        self.expected = expected
        self.timed = timed
        self.next_seq = 1
        self.merged = self.boundaries = self.seq_faults = self.text_faults = 0
        self.positions: dict[str, int] = {}  # message id -> characters received
        self.done_at = 0.0  # when the last seq arrived
        # timed: per delta frame, its arrival and the seqs it covers
        self.arrivals = array("d")
        self.firsts = array("q")
        self.lasts = array("q")

    def event(self, event: dict[str, Any], now: float) -> bool:
        """Check one event that arrived at ``now``; True when it is the stream's last."""
        seq = event["seq"]
        first = event.get("from_seq", seq)
        if first != self.next_seq or seq < first:
            self.seq_faults += 1
        self.next_seq = seq + 1
        if event["type"] == "message_delta":
            message_id, delta = event["message_id"], event["delta"]
            at = self.positions.get(message_id, 0)
            if not self.expected.texts.get(message_id, "").startswith(delta, at):
                self.text_faults += 1
            self.positions[message_id] = at + len(delta)
            if first != seq:
                self.merged += 1
            if self.timed:
                self.arrivals.append(now)
                self.firsts.append(first)
                self.lasts.append(seq)
        else:
            self.boundaries += 1
        if seq >= self.expected.final and not self.done_at:
            self.done_at = now
            return True
        return False

    @property
    def complete(self) -> bool:
        """The stream's last seq arrived."""
        return self.next_seq > self.expected.final

    def text_complete(self) -> bool:
        """Every message's text in full, nothing wrong on the way."""
        return not self.text_faults and all(
            self.positions.get(message_id) == len(text)
            for message_id, text in self.expected.texts.items()
        )

    def stream_faults(self) -> int:
        """Seqs out of order, and a count of boundaries other than the stream's."""
        return self.seq_faults + (self.boundaries != self.expected.boundaries)

    def latencies(self, published: array[float], into: Histogram) -> float:
        """Each delta's publish-to-receive latency into ``into`` (a merged frame's every
        delta, from its own publish time); returns this watcher's p99 (µs; NaN: none)."""
        own = Histogram(CLIENT_BITS)
        for arrival, first, last in zip(self.arrivals, self.firsts, self.lasts, strict=True):
            for seq in range(first, last + 1):
                value = micros(arrival - published[seq - 1])
                into.record(value)
                own.record(value)
        return own.percentile(0.99)


class _Watcher(WSListener):
    """One watcher of one agent: its frames to a ``StreamCheck``; a laggard paces itself."""

    def __init__(self, agent: str, expected: Expected, laggard: bool, fleet: _Fleet) -> None:
        self.agent = agent
        self.check = StreamCheck(expected, timed=not laggard)
        self.laggard = laggard
        self.rate = expected.laggard_rate
        self.fleet = fleet
        self.transport: WSTransport | None = None
        self.frames = self.bytes = 0
        self.closed = False  # by the server, or the connection dropped
        self.stopping = False  # we close it
        # laggards: the leaky bucket
        self.pacing = laggard
        self.free_at = 0.0
        self.paused = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.closed = not self.stopping
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.monotonic()
        payload = frame.get_payload_as_memoryview()
        size = frame_bytes(len(payload))
        self.frames += 1
        self.bytes += size
        if self.check.event(orjson.loads(payload), now):
            self.fleet.completed()
        if self.pacing:
            self._pace(now, size)

    def _pace(self, now: float, size: int) -> None:
        """Pay for ``size`` bytes at the laggard's rate; stop reading while in debt."""
        self.free_at = max(self.free_at, now) + size / self.rate
        if not self.paused and self.free_at - now > PACE_SLACK and self.transport is not None:
            self.paused = True
            self.transport.underlying_transport.pause_reading()
            asyncio.get_running_loop().call_later(self.free_at - now, self._resume)

    def _resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_disconnected:
            self.paused = False
            self.transport.underlying_transport.resume_reading()

    def stop_pacing(self) -> None:
        self.pacing = False
        self._resume()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.stopping:
            self.closed = True
        self.fleet.completed()


class _Fleet:
    """A child's watchers and its answers to the parent's commands."""

    def __init__(self, port: int, control: Connection) -> None:
        self.port = port
        self.control = control
        self.watchers: list[_Watcher] = []
        self.expected: dict[str, Expected] = {}
        self.waiting: asyncio.Future[None] | None = None
        self.cpu_mark, self.wall_mark = time.process_time(), time.monotonic()
        self.busy = 0.0  # CPU time over wall time from the mark until everything arrived
        self.stopped = asyncio.get_running_loop().create_future()

    def completed(self) -> None:
        if self.waiting is not None and not self.waiting.done() and self._all_done():
            self.waiting.set_result(None)

    def _all_done(self) -> bool:
        return all(w.check.complete or w.closed for w in self.watchers)

    def on_command(self) -> None:
        command = self.control.recv()
        handlers: dict[str, Callable[..., Any]] = {
            "connect": lambda *args: asyncio.ensure_future(self._connect(*args)),
            "mark": self._mark,
            "unthrottle_at": self._unthrottle_at,
            "await": lambda deadline: asyncio.ensure_future(self._await(deadline)),
            "report": self._report,
            "stop": lambda: asyncio.ensure_future(self._stop()),
        }
        handlers[command[0]](*command[1:])

    async def _connect(self, plan: list[tuple[str, bool]], streams: dict[str, Stream]) -> None:
        try:
            for agent, stream in streams.items():
                self.expected.setdefault(agent, Expected(agent, stream))
            for agent, laggard in plan:
                watcher = _Watcher(agent, self.expected[agent], laggard, self)
                await ws_connect(
                    lambda w=watcher: w,
                    f"ws://{HOST}:{self.port}{PATH}",
                    websocket_handshake_timeout=CONNECT_TIMEOUT,
                    socket_factory=_small_buffer if laggard else None,
                    use_aiofastnet=False,  # asyncio's transports: pause_reading as documented
                )
                self.watchers.append(watcher)
        except (OSError, asyncio.TimeoutError) as exc:
            self.control.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        self.control.send(("connected", len(plan)))

    def _mark(self) -> None:
        self.cpu_mark, self.wall_mark = time.process_time(), time.monotonic()
        self.control.send(("marked",))

    def _unthrottle_at(self, at: float) -> None:
        def unthrottle() -> None:
            for watcher in self.watchers:
                watcher.stop_pacing()

        asyncio.get_running_loop().call_later(max(0.0, at - time.monotonic()), unthrottle)
        self.control.send(("ok",))

    async def _await(self, deadline: float) -> None:
        self.waiting = asyncio.get_running_loop().create_future()
        self.completed()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.waiting, max(0.0, deadline - time.monotonic()))
        self.waiting = None
        wall = max(time.monotonic() - self.wall_mark, 1e-9)
        self.busy = (time.process_time() - self.cpu_mark) / wall
        self.control.send(("done", self._all_done()))

    def _report(self, published: dict[str, bytes]) -> None:
        times = {agent: array("d", data) for agent, data in published.items()}
        histogram = Histogram()
        worst = math.nan
        by_agent: dict[str, dict[str, float]] = {}
        totals = dict.fromkeys(
            ("seq_faults", "text_faults", "closed", "incomplete", "keeper_merged",
             "laggard_merged", "laggard_frames", "laggard_bytes", "laggards",
             "keeper_frames", "laggard_done_at", "keeper_done_at"),
            0.0,
        )  # fmt: skip
        for w in self.watchers:
            check = w.check
            totals["seq_faults"] += check.stream_faults()
            totals["text_faults"] += not check.text_complete()
            totals["closed"] += w.closed
            totals["incomplete"] += not check.complete
            agent = by_agent.setdefault(w.agent, {"laggards": 0})
            if w.laggard:
                totals["laggards"] += 1
                totals["laggard_merged"] += check.merged
                totals["laggard_frames"] += w.frames
                totals["laggard_bytes"] += w.bytes
                totals["laggard_done_at"] = max(totals["laggard_done_at"], check.done_at)
                agent["laggards"] += 1
                continue
            totals["keeper_merged"] += check.merged
            totals["keeper_frames"] += w.frames
            totals["keeper_done_at"] = max(totals["keeper_done_at"], check.done_at)
            p99 = check.latencies(times[w.agent], histogram)
            worst = p99 if math.isnan(worst) else max(worst, p99)
            if check.complete and not check.merged and "frames" not in agent:
                agent["frames"], agent["bytes"] = w.frames, w.bytes  # what an unmerged one gets
        self.control.send(
            (
                "report",
                totals,
                by_agent,
                histogram.counts.tobytes(),
                worst,
                self.busy,
            )
        )

    async def _stop(self) -> None:
        for watcher in self.watchers:
            watcher.stopping = True
            if watcher.transport is not None:
                watcher.transport.disconnect()
        for watcher in self.watchers:
            if watcher.transport is not None:
                await watcher.transport.wait_disconnected()
        self.stopped.set_result(None)


def _small_buffer(_url: Any) -> socket.socket:
    """An unconnected socket whose receive buffer is set before the window is: picows
    connects it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LAGGARD_RCVBUF)
    sock.setblocking(False)
    return sock


class Fleet(Protocol):
    """What a watcher process runs: it answers the parent's commands until ``stopped``."""

    stopped: asyncio.Future[None]

    def on_command(self) -> None: ...


def serve_fleet(
    fleet_type: Callable[[int, Connection], Fleet], port: int, cpu: int | None, control: Connection
) -> None:
    """Child process: a loop whose control pipe brings the parent's commands until "stop"."""
    ignore_interrupts()
    pin_to_cpu(cpu)
    raise_fd_limit()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        fleet = fleet_type(port, control)
        loop.add_reader(control.fileno(), fleet.on_command)
        # the loop made the pipe non-blocking; a command larger than the pipe's buffer
        # (a plan, the publish times) must still be read whole once it starts arriving
        os.set_blocking(control.fileno(), True)
        control.send(("spawned",))
        await fleet.stopped
        loop.remove_reader(control.fileno())

    try:
        loop.run_until_complete(main())
        control.send(("stopped",))
    finally:
        loop.close()


class WatcherProcess:
    """The parent's handle on one watcher process (a spawned child running ``fleet_type``)."""

    def __init__(
        self,
        port: int,
        cpu: int | None,
        fleet_type: Callable[[int, Connection], Fleet],
        name: str,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.control, child_end = context.Pipe()
        self.process = context.Process(
            target=serve_fleet, args=(fleet_type, port, cpu, child_end), name=name, daemon=True
        )
        self.process.start()
        child_end.close()
        self.cpu = cpu

    def send(self, *command: Any) -> None:
        self.control.send(command)

    def reply(self, timeout: float) -> tuple[Any, ...]:
        if not self.control.poll(timeout):
            raise TimeoutError(f"a watcher process did not answer within {timeout:.0f} s")
        try:
            reply: tuple[Any, ...] = self.control.recv()
        except EOFError:
            self.process.join(1.0)
            raise RuntimeError(
                f"a watcher process died (exit code {self.process.exitcode})"
            ) from None
        if reply[0] == "error":
            raise RuntimeError(f"the watchers could not connect: {reply[1]}")
        return reply

    def stop(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError, EOFError):
            self.send("stop")
            self.reply(REPLY_GRACE)
        self.process.join(10.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.process.close()  # its sentinel pipe
        self.control.close()


@dataclass(frozen=True)
class Outcome:
    """What every watcher process saw in one run, added up."""

    complete: bool  # every watcher got its stream's last seq (or was closed) in time
    totals: dict[str, float]  # sums (``*_done_at``: the latest)
    unmerged_frames: float  # what the laggards would have got one frame per event
    unmerged_bytes: float
    histogram: Histogram  # keepers' delta latencies, µs
    worst_keeper_p99_us: float
    receiver_cpu: float  # the busiest watcher process's CPU time over wall time, mark to done


class WatcherFleet:
    """Watchers of ``plan`` (agent, laggard) in connection order, in a child per CPU of
    ``cpus`` (consecutive blocks of the plan), streams as ``streams`` says per agent."""

    def __init__(
        self,
        port: int,
        plan: list[tuple[str, bool]],
        streams: dict[str, Stream],
        cpus: tuple[int | None, ...],
    ) -> None:
        self.port = port
        self.plan = plan
        self.streams = streams
        self.cpus = cpus[: max(1, min(len(cpus), len(plan)))]
        self._children: list[WatcherProcess] = []

    def start(self, connected: Callable[[int], None] | None = None) -> WatcherFleet:
        """Spawn the children, open every connection in plan order; return once all are up."""
        try:
            self._children = [
                WatcherProcess(self.port, cpu, _Fleet, "token-watchers") for cpu in self.cpus
            ]
            for child in self._children:
                child.reply(STARTUP_TIMEOUT)
            share, extra = divmod(len(self.plan), len(self._children))
            at = 0
            for index, child in enumerate(self._children):
                block = self.plan[at : at + share + (index < extra)]
                at += len(block)
                agents = {agent for agent, _ in block}
                child.send("connect", block, {a: self.streams[a] for a in agents})
                child.reply(STARTUP_TIMEOUT + CONNECT_TIMEOUT * len(block))
                if connected is not None:
                    connected(len(block))
        except BaseException:
            self.stop()
            raise
        return self

    def _ask(self, *command: Any, timeout: float = REPLY_GRACE) -> list[tuple[Any, ...]]:
        for child in self._children:
            child.send(*command)
        return [child.reply(timeout) for child in self._children]

    def mark(self) -> None:
        """Start counting the watchers' CPU time from now."""
        self._ask("mark")

    def unthrottle_at(self, at: float) -> None:
        """Laggards read at full speed from ``at`` (monotonic) on."""
        self._ask("unthrottle_at", at)

    def wait(self, deadline: float) -> bool:
        """Until every watcher has its stream's last seq (True), or ``deadline`` (False)."""
        replies = self._ask("await", deadline, timeout=deadline - time.monotonic() + REPLY_GRACE)
        return all(done for _, done in replies)

    def outcome(self, complete: bool, published: dict[str, bytes]) -> Outcome:
        """Everything the watchers checked and timed, given each event's publish times."""
        totals: dict[str, float] = {}
        by_agent: dict[str, dict[str, float]] = {}
        histogram, worst, busiest = Histogram(), math.nan, 0.0
        for _, child_totals, child_agents, counts, child_worst, cpu in self._ask(
            "report", published
        ):
            for key, value in child_totals.items():
                latest = key.endswith("_done_at")
                totals[key] = max(totals.get(key, 0.0), value) if latest else (
                    totals.get(key, 0.0) + value
                )  # fmt: skip
            for agent, seen in child_agents.items():
                into = by_agent.setdefault(agent, {"laggards": 0})
                into["laggards"] += seen["laggards"]
                if "frames" in seen:
                    into.setdefault("frames", seen["frames"])
                    into.setdefault("bytes", seen["bytes"])
            histogram.merge(Histogram(counts=counts))
            if not math.isnan(child_worst):
                worst = child_worst if math.isnan(worst) else max(worst, child_worst)
            busiest = max(busiest, cpu)
        unmerged = [
            (seen["laggards"] * seen.get("frames", math.nan),
             seen["laggards"] * seen.get("bytes", math.nan))
            for seen in by_agent.values()
            if seen["laggards"]
        ]  # fmt: skip
        return Outcome(
            complete,
            totals,
            sum(frames for frames, _ in unmerged),
            sum(size for _, size in unmerged),
            histogram,
            worst,
            busiest,
        )

    def stop(self) -> None:
        for child in self._children:
            child.stop()
        self._children = []
