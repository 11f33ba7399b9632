"""``chat``: MemGPT-protocol requests, against a server the bench starts or any ``ws://`` URL.

Each client, on its own connection and talking to its own agent (``chat-<n>``), sends a
``user_message``, waits for its ``agent_response_end`` and sends the next at once, for
``duration`` seconds a round (after one untimed request each). Per request, from the
send: ``agent_response_start``, the first agent message answering it and
``agent_response_end``. A message answers a request when its text repeats the request's
token: MemGPT's server sends every agent's messages to every client, and any agent
that answers a user repeats what it heard.

The server: ``agentcast`` is ``agentcast serve`` (its demo agent, no per-client message
rate limit: start one for ``--url`` with ``--max-message-rate 0`` too) in a subprocess,
``memgpt`` the ``memgpt`` peer (MemGPT's request handling in front of the same demo
agent), and a ``ws://`` URL (``--url``) any MemGPT-compatible server already running.
The clients run where the receivers would (a process per receiver CPU), on uvloop with
picows' client: one callback per frame, no coroutine or future per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from agentcast.bench.harness import CpuPlan, ignore_interrupts, pin_to_cpu, raise_fd_limit
from agentcast.bench.histogram import Histogram, micros
from agentcast.bench.peers import HOST, parse_spec
from agentcast.bench.progress import Progress
from agentcast.bench.server_process import ServerProcess
from agentcast.memgpt import protocol

if TYPE_CHECKING:
    from agentcast.bench.workloads import Round, Settings

ANSWER_GRACE = 30.0  # seconds for the requests in flight to be answered (warm-up: from the send)
CONNECT_BATCH = 200  # connections opened at once
CONNECT_TIMEOUT = 30.0  # seconds for one connection's upgrade (a shared, busy machine is slow)
STOP_TIMEOUT = 20.0  # seconds for a started server to exit
URL = re.compile(r"ws://\S+/")


class ClosedByServer(RuntimeError):
    """The server closed clients mid-conversation: their numbers would not be the server's
    answering rate but how fast it turned them away."""


def chat(
    server: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """``rounds`` windows of ``duration`` seconds of requests from ``clients`` clients."""
    if not server.startswith("ws://"):
        progress.phase("starting server")
    with _target(server, plan.server) as url:
        rounds = []
        for number in range(1, settings.rounds + 1):
            progress.phase(f"round {number}/{settings.rounds}")
            rounds.append(_round(url, clients, settings.duration, plan))
        progress.phase("stopping")
        return rounds


def _target(server: str, cpu: int | None) -> AbstractContextManager[str]:
    """The URL to send requests to: ``server`` itself, or that of a server started for it."""
    if server.startswith("ws://"):
        return contextlib.nullcontext(server)
    name, settings = parse_spec(server)
    if name == "agentcast" and not settings:
        return _agentcast_serve(cpu)
    if name == "memgpt":
        return _peer(server, cpu)
    raise ValueError(
        f"{server} does not answer MemGPT requests: chat runs against agentcast (no settings),"
        " memgpt, or --url ws://... of a running server"
    )


@contextlib.contextmanager
def _agentcast_serve(cpu: int | None) -> Iterator[str]:
    """``agentcast serve --port 0`` pinned to ``cpu``; yields the URL it says it serves."""
    command = [
        *(sys.executable, "-m", "agentcast", "serve", "--port", "0", "--log-level", "WARNING"),
        *("--max-message-rate", "0"),  # the clients send requests as fast as they are answered
    ]
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert process.stdout is not None
        try:
            if cpu is not None:  # before it starts its threads: they inherit the placement
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(process.pid, {cpu})
            line = process.stdout.readline()  # where it serves, or nothing when it exits
            if (found := URL.search(line)) is None:
                process.wait(STOP_TIMEOUT)
                errors.seek(0)
                raise RuntimeError(f"agentcast serve did not start: {errors.read().strip()}")
            yield found.group(0)
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


@contextlib.contextmanager
def _peer(spec: str, cpu: int | None) -> Iterator[str]:
    server = ServerProcess(spec, cpu).start()
    try:
        yield f"ws://{HOST}:{server.port}/"
    finally:
        server.stop()


PHASES = ("start", "first", "end")  # agent_response_start, first agent message, ..._end


@dataclass
class Tally:
    """What client processes measured in their window (µs histograms merge exactly)."""

    latencies: dict[str, Histogram] = field(
        default_factory=lambda: {phase: Histogram() for phase in PHASES}
    )
    answered: int = 0
    errors: int = 0  # agent_response_error and server_error frames
    no_agent_message: int = 0  # answered (end) before any agent message answering it
    unanswered: int = 0  # in flight when the grace ran out or the connection closed
    window: float = 0.0  # seconds from the first timed send to the last answer
    busiest: float = 0.0  # the busiest process's CPU seconds over its window

    def add(self, other: Tally) -> None:
        """Count ``other``'s requests in with these; the longer window, the busier process."""
        for phase, histogram in self.latencies.items():
            histogram.merge(other.latencies[phase])
        self.answered += other.answered
        self.errors += other.errors
        self.no_agent_message += other.no_agent_message
        self.unanswered += other.unanswered
        self.window = max(self.window, other.window)
        self.busiest = max(self.busiest, other.busiest)

    def summary(self) -> Round:
        percentiles = {
            f"{phase}_{name}_ms": self.latencies[phase].percentile(share) / 1e3
            for phase in PHASES
            for name, share in (("p50", 0.5), ("p99", 0.99))
        }
        return {
            "requests_per_s": self.answered / self.window if self.window else math.nan,
            **percentiles,
            "requests": self.answered,
            "errors": self.errors,
            "no_agent_message": self.no_agent_message,
            "lost": self.unanswered,
            "receiver_cpu": self.busiest,
        }


def _round(url: str, clients: int, duration: float, plan: CpuPlan) -> Round:
    """One window: the clients split over a process per receiver CPU, their tallies merged."""
    cpus = plan.receivers[: max(1, min(clients, len(plan.receivers)))]
    shares = [clients // len(cpus) + (i < clients % len(cpus)) for i in range(len(cpus))]
    firsts = [sum(shares[:i]) for i in range(len(cpus))]
    context = multiprocessing.get_context("spawn")
    total = Tally()
    with concurrent.futures.ProcessPoolExecutor(
        len(cpus), mp_context=context, initializer=ignore_interrupts
    ) as pool:
        for tally in pool.map(
            _client_process, [url] * len(cpus), firsts, shares, [duration] * len(cpus), cpus
        ):
            total.add(tally)
    return total.summary()


def _client_process(url: str, first: int, count: int, duration: float, cpu: int | None) -> Tally:
    """In a spawned process on ``cpu``: clients ``first`` .. ``first + count - 1``, one window."""
    pin_to_cpu(cpu)
    raise_fd_limit()
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(_converse(url, first, count, duration))
    finally:
        loop.close()


async def _converse(url: str, first: int, count: int, duration: float) -> Tally:
    connections = [_ChatClient(f"chat-{n}") for n in range(first, first + count)]
    try:
        for start in range(0, count, CONNECT_BATCH):
            batch = connections[start : start + CONNECT_BATCH]
            await asyncio.gather(
                *(
                    ws_connect(lambda c=client: c, url, websocket_handshake_timeout=CONNECT_TIMEOUT)
                    for client in batch
                )
            )
        warm_up = [client.converse(until=0.0, tally=None) for client in connections]
        _, pending = await asyncio.wait(warm_up, timeout=ANSWER_GRACE)
        _refuse_closed(connections)
        if pending:
            raise RuntimeError(
                f"{len(pending)} of {count} first requests were not answered within"
                f" {ANSWER_GRACE:g} s"
            )
        tally = Tally()
        cpu_before, started = time.process_time(), time.monotonic()
        until = started + duration
        idle = [client.converse(until, tally) for client in connections]
        await asyncio.wait(idle, timeout=duration + ANSWER_GRACE)
        _refuse_closed(connections)
        for client in connections:
            client.give_up()
        tally.window = max(max(c.last_answer for c in connections) - started, 1e-9)
        tally.busiest = (time.process_time() - cpu_before) / tally.window
        return tally
    finally:
        for client in connections:
            client.close()
        for client in connections:
            await client.closed()


def _refuse_closed(connections: list[_ChatClient]) -> None:
    """Raise ``ClosedByServer`` when the server closed any of ``connections``."""
    closed = [client for client in connections if client.closed_by_server is not None]
    if not closed:
        return
    how = Counter(client.closed_by_server for client in closed)
    after = min(client.closed_after for client in closed)
    closes = [f"{close} x {n}" if len(how) > 1 else str(close) for close, n in how.items()]
    raise ClosedByServer(
        f"the server closed {len(closed)} of {len(connections)} clients with"
        f" {', '.join(closes)}, the first {after:.3f} s after connecting: no rate"
    )


class _ChatClient(WSListener):
    """One user talking to agent ``agent_id``, one request at a time (see ``converse``)."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.transport: WSTransport | None = None
        self.tally: Tally | None = None  # None: untimed (the warm-up)
        self.until = 0.0  # no new request after this time
        self.idle: asyncio.Future[None] | None = None  # done when the last request is answered
        self.asked = 0
        self.token = ""
        self.sent_at = self.start_at = self.first_at = self.last_answer = 0.0
        self.connected_at = 0.0
        self.closing = False  # we close it (the round is over)
        self.closed_by_server: str | None = None  # "1008 (message rate limit exceeded)"
        self.closed_after = 0.0  # seconds from the connection's opening

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.connected_at = time.monotonic()

    def converse(self, until: float, tally: Tally | None) -> asyncio.Future[None]:
        """Send a request now and another after each answer until ``until``; the future is
        done once the last is answered (or the connection is gone)."""
        self.until, self.tally = until, tally
        self.idle = asyncio.get_running_loop().create_future()
        self._ask()
        return self.idle

    def _ask(self) -> None:
        assert self.transport is not None
        self.asked += 1
        self.token = f"<{self.agent_id}/{self.asked}>"  # no token is the prefix of another
        self.start_at = self.first_at = 0.0
        self.sent_at = time.monotonic()
        self.transport.send(WSMsgType.TEXT, protocol.user_message(self.token, self.agent_id))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            reason = frame.get_close_message().decode("utf-8", "replace")
            self._closed(f"{frame.get_close_code()}" + (f" ({reason})" if reason else ""))
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.monotonic()
        body = orjson.loads(frame.get_payload_as_bytes())
        kind = body.get("type")
        if kind == "agent_response":
            if not self.first_at and self.token in str(body.get("message")):
                self.first_at = now
        elif kind == "agent_response_start":
            self.start_at = self.start_at or now
        elif kind == "agent_response_end":
            self._answered(now)
        elif kind in ("agent_response_error", "server_error") and self.tally is not None:
            self.tally.errors += 1

    def _answered(self, now: float) -> None:
        self.last_answer = now
        tally = self.tally
        if tally is not None:
            tally.answered += 1
            if self.start_at:
                tally.latencies["start"].record(micros(self.start_at - self.sent_at))
            if self.first_at:
                tally.latencies["first"].record(micros(self.first_at - self.sent_at))
            else:
                tally.no_agent_message += 1
            tally.latencies["end"].record(micros(now - self.sent_at))
        if now < self.until:
            self._ask()
        elif self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed("no close frame")
        self.give_up()

    def _closed(self, how: str) -> None:
        """The connection ended: by the server unless we closed it, first ``how`` counts."""
        if not self.closing and self.closed_by_server is None:
            self.closed_by_server = how
            self.closed_after = time.monotonic() - self.connected_at

    def give_up(self) -> None:
        """No answer to wait for any more: the request in flight, if any, is unanswered."""
        if self.idle is not None and not self.idle.done():
            if self.tally is not None:
                self.tally.unanswered += 1
            self.idle.set_result(None)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.send_close()
            self.transport.disconnect()

    async def closed(self) -> None:
        if self.transport is not None:
            await self.transport.wait_disconnected()
