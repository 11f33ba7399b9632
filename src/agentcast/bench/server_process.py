"""The server under test in its own process, with its publisher, driven over a pipe.

A spawned child (no copy of the parent's threads or sockets) pins itself to
the server CPU, starts the peer, and then runs each command from the parent
(``publisher`` functions) in a fresh thread, as an agent thread would
publish. The parent reads the child's memory from /proc and never publishes
itself, so its own work never shows up in the server's numbers.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from agentcast.bench import publisher
from agentcast.bench.harness import ignore_interrupts, pin_to_cpu, raise_fd_limit
from agentcast.bench.peers import Peer, PeerUnavailable, create, trust_anchor

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def _client_count(peer: Peer) -> int:
    return peer.client_count


def _route(peer: Peer, watched: list[str]) -> None:
    peer.route(watched)


def _stats(peer: Peer) -> dict[str, int]:
    """The server's own counters, for a peer that keeps them (agentcast); else none."""
    stats = getattr(peer, "stats", None)
    return {} if stats is None else dict(stats())


_COMMANDS: dict[str, Callable[..., Any]] = {
    "burst": publisher.burst,
    "paced": publisher.paced,
    "agents_paced": publisher.agents_paced,
    "agents_publisher_cpu": publisher.agents_publisher_cpu,
    "tokens_paced": publisher.tokens_paced,
    "route": _route,
    "stats": _stats,
    "publish_costs": publisher.publish_costs,
    "headroom": publisher.headroom,
    "agent_rate": lambda _peer, seconds: publisher.agent_rate(seconds),
    "client_count": _client_count,
    "cpu_seconds": lambda _peer: time.process_time(),  # every thread of the server process
}


def _serve(name: str, cpu: int | None, control: Connection) -> None:
    """Child process: start the peer, answer commands until "stop", stop the peer."""
    # When the receivers leave a slow server with a backlog, the transports (asyncio's, and
    # aiofastnet's under picows) warn once per write to a closed connection: millions of
    # lines. Errors still show.
    for transport_logger in ("asyncio", "aiofastnet"):
        logging.getLogger(transport_logger).setLevel(logging.ERROR)
    ignore_interrupts()
    pin_to_cpu(cpu)
    raise_fd_limit()
    try:
        peer = create(name)
        port = peer.start()
    except PeerUnavailable as exc:
        control.send(("unavailable", str(exc)))
        return
    except Exception as exc:
        control.send(("error", f"{name} did not start: {type(exc).__name__}: {exc}"))
        return
    control.send(("ready", port, trust_anchor(peer)))
    try:
        while (command := control.recv())[0] != "stop":
            control.send(_run_in_thread(_COMMANDS[command[0]], peer, *command[1:]))
    finally:
        peer.stop()
        control.send(("stopped",))


def _run_in_thread(function: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """``function(*args)`` in a new thread (an agent's, not the process's main thread)."""
    reply: list[tuple[str, Any]] = []

    def call() -> None:
        try:
            reply.append(("ok", function(*args)))
        except Exception:
            reply.append(("error", traceback.format_exc(limit=5)))

    thread = threading.Thread(target=call, name="agent")
    thread.start()
    thread.join()
    return reply[0]


class ServerProcess:
    """The parent's handle on one peer running in a spawned, pinned process."""

    def __init__(self, peer: str, cpu: int | None) -> None:
        self.peer = peer
        self.cpu = cpu
        self.port = 0
        self.ca_pem: str | None = None  # the CA to trust when the peer serves wss://
        self._control: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> ServerProcess:
        """Spawn the child; return once the peer listens. Raises ``PeerUnavailable`` to skip."""
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(self.peer, self.cpu, child),
            name=f"{self.peer}-server",
            daemon=True,
        )
        self._process.start()
        child.close()
        status, value, *trust = self._reply(START_TIMEOUT)
        if status == "unavailable":
            self.stop()
            raise PeerUnavailable(value)
        if status != "ready":
            self.stop()
            raise RuntimeError(value)
        self.port = value
        self.ca_pem = trust[0]
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None and self._process.pid is not None, "start() first"
        return self._process.pid

    def call(self, command: str, *args: Any, timeout: float) -> Any:
        """Run a ``publisher`` command in the child and return its result."""
        assert self._control is not None, "start() first"
        self._control.send((command, *args))
        status, value = self._reply(timeout)
        if status != "ok":
            raise RuntimeError(f"{self.peer}: {command} failed in the server process:\n{value}")
        return value

    @property
    def client_count(self) -> int:
        count: int = self.call("client_count", timeout=START_TIMEOUT)
        return count

    def rss_bytes(self) -> int:
        """The child's resident set size (VmRSS), from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def _reply(self, timeout: float) -> tuple[Any, ...]:
        assert self._control is not None and self._process is not None
        if not self._control.poll(timeout):
            raise TimeoutError(f"the {self.peer} server did not answer within {timeout:.0f} s")
        try:
            reply: tuple[Any, ...] = self._control.recv()
        except EOFError:
            self._process.join(1.0)
            raise RuntimeError(
                f"the {self.peer} server process died (exit code {self._process.exitcode})"
            ) from None
        return reply

    def stop(self) -> None:
        """Stop the peer and end the child (killed if it does not exit in time)."""
        if self._process is None or self._control is None:
            return
        with contextlib.suppress(OSError, EOFError):  # the child may be gone already
            self._control.send(("stop",))
            if self._control.poll(STOP_TIMEOUT):
                self._control.recv()
        self._process.join(STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._control.close()
        self._process = self._control = None
