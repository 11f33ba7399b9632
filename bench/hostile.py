"""A hostile run against a real `agentcast serve` with auth, TLS and Redis, on loopback.

    python bench/hostile.py [--seconds 6] [--channel-ttl 8]

Starts redis-server and `agentcast serve --auth-secret-file ... --certfile ... --redis ...
--max-connections-per-ip 20 --channel-ttl N`, keeps a control client (wss://, a valid
token, its own source address) pinging the server every 20 ms, then runs each attack of
issue 21 for a bounded time from other loopback addresses (127.0.0.2 and up):

  redis      #1  8 connections with an ordinary alice-* token send 60 KB user_messages
                 to fresh alice-N agents (Redis memory, keys without a TTL)
  channels   #4  4 connections subscribe with since + unsubscribe to fresh ids
  pong       #5  unsolicited PONGs as fast as a socket takes them (#6: RSS after)
  fragments  #5  one text frame's first fragment, then endless empty continuations
  tls        #7  3,000 TCP connections that send half a ClientHello
  http       #8  `GET //[` and `Origin: http://[` with auth on

and an idle phase after them (past the channel TTL). For each phase it prints the control
client's ping RTT (p50, p99, max), the server's RSS and Redis' used memory at its end,
the ERROR lines and tracebacks the server wrote during it, and what the attack saw.
Everything is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import orjson
import psutil
import redis
import trustme
import websockets

SECRET = "hostile-run-secret-of-at-least-32-bytes"
PER_IP = 20
PING_EVERY = 0.02


def token(sub: str, **claims: object) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600, **claims}, SECRET, "HS256")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client frame (masked with a zero key: the bytes stay readable)."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


@dataclass
class Phase:
    name: str
    started: float
    ended: float = 0.0
    rss_mib: float = 0.0
    redis_mib: float = 0.0
    errors: int = 0
    seen: dict[str, object] = field(default_factory=dict)


class Server:
    """redis-server and agentcast serve in a temporary directory, stopped on exit."""

    def __init__(self, directory: Path, channel_ttl: float) -> None:
        self.directory = directory
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.certfile = directory / "cert.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.certfile))
        self.cafile = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        secret = directory / "secret"
        secret.write_text(SECRET)
        self.redis_port, self.port = free_port(), free_port()
        redis_log = directory / "redis.log"
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(redis_log),
            ],
            stdout=subprocess.DEVNULL,
            cwd=directory,
        )
        self.redis_client = redis.Redis(port=self.redis_port)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if self.redis_client.ping():
                    break
            if time.monotonic() > deadline or self.redis.poll() is not None:
                said = redis_log.read_text()[-500:] if redis_log.exists() else ""
                raise SystemExit(f"redis-server did not start on {self.redis_port}: {said}")
            time.sleep(0.05)
        self.log = (directory / "serve.log").open("w+")
        self.serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentcast",
                "serve",
                "--port",
                str(self.port),
                "--auth-secret-file",
                str(secret),
                "--certfile",
                str(self.certfile),
                "--redis",
                f"redis://127.0.0.1:{self.redis_port}",
                "--max-connections-per-ip",
                str(PER_IP),
                "--channel-ttl",
                str(channel_ttl),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.serve.stdout is not None
        banner = self.serve.stdout.readline()
        if "wss://" not in banner:
            raise SystemExit(f"agentcast serve did not start: {banner!r}")
        self.process = psutil.Process(self.serve.pid)
        self.client_tls = ssl.create_default_context(cafile=str(self.cafile))

    def rss_mib(self) -> float:
        return float(self.process.memory_info().rss) / 2**20

    def redis_mib(self) -> float:
        return float(self.redis_client.info("memory")["used_memory"]) / 2**20

    def log_lines(self) -> list[str]:
        self.log.flush()
        return (self.directory / "serve.log").read_text(errors="replace").splitlines()

    def metric(self, name: str) -> float | None:
        """One gauge or counter of GET /metrics (the token as a Bearer header)."""
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/metrics",
            headers={"Authorization": f"Bearer {token('ops')}"},
        )
        with urllib.request.urlopen(request, context=self.client_tls, timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self) -> None:
        self.serve.terminate()
        try:
            self.serve.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.serve.kill()
            self.serve.communicate()
        self.redis.terminate()
        self.redis.wait(10)
        self.log.close()


class Control:
    """A well-behaved client pinging every 20 ms from 127.0.0.1, on a thread of its own."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rtts: list[tuple[float, float]] = []  # (when, seconds)
        self.failure: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(15):
            raise SystemExit(f"the control client did not connect: {self.failure}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        url = f"wss://127.0.0.1:{self.server.port}/?token={token('ctl', agents=['ctl'])}"
        try:
            async with websockets.connect(url, ssl=self.server.client_tls) as ws:
                self._ready.set()
                while not self._stop.is_set():
                    started = time.monotonic()
                    pong = await ws.ping()
                    await asyncio.wait_for(pong, 10)
                    self.rtts.append((started, time.monotonic() - started))
                    await asyncio.sleep(PING_EVERY)
        except Exception as exc:  # reported in the table: the control client lost
            self.failure = f"{type(exc).__name__}: {exc}"
            self._ready.set()

    def during(self, phase: Phase) -> list[float]:
        return [rtt for when, rtt in self.rtts if phase.started <= when < phase.ended]


def tls_socket(server: Server, source: str) -> ssl.SSLSocket:
    raw = socket.create_connection(
        ("127.0.0.1", server.port), timeout=10, source_address=(source, 0)
    )
    return server.client_tls.wrap_socket(raw, server_hostname="127.0.0.1")


def upgrade(sock: socket.socket, path: str, headers: str = "") -> bytes:
    """Send a WebSocket upgrade; the response head."""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{headers}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def until(deadline: float) -> Iterator[int]:
    n = 0
    while time.monotonic() < deadline:
        yield n
        n += 1


def alice_clients(
    server: Server,
    seconds: float,
    connections: int,
    first_address: int,
    turn: Callable[[int], list[dict[str, object]]],
    pause: float,
) -> dict[str, int]:
    """``connections`` clients with an ordinary ``alice-*`` token, each from its own loopback
    address, send ``turn(n)`` for n = 0, 1, ... (n shared by all) until the deadline,
    reading what comes back without waiting for it, and reconnect when closed."""
    deadline = time.monotonic() + seconds
    url = f"wss://127.0.0.1:{server.port}/?token={token('alice', agents=['alice-*'])}"
    counts = {"requests": 0, "closed": 0}
    turns = iter(range(10**9))

    async def one(index: int) -> None:
        address = (f"127.0.0.{first_address + index}", 0)
        while time.monotonic() < deadline:
            try:
                async with websockets.connect(
                    url, ssl=server.client_tls, local_addr=address, max_size=None
                ) as ws:
                    while time.monotonic() < deadline:
                        for request in turn(next(turns)):
                            await ws.send(orjson.dumps(request).decode())
                            counts["requests"] += 1
                        await asyncio.sleep(pause)
                        with contextlib.suppress(TimeoutError):
                            while True:
                                await asyncio.wait_for(ws.recv(), 0.001)
            except (websockets.ConnectionClosed, OSError, websockets.InvalidStatus):
                counts["closed"] += 1
                await asyncio.sleep(0.05)

    async def all_of_them() -> None:
        await asyncio.gather(*(one(i) for i in range(connections)))

    asyncio.run(all_of_them())
    return counts


def attack_redis(server: Server, seconds: float) -> dict[str, object]:
    """#1: 60 KB user messages to fresh agents, 8 connections, as fast as they are let."""
    big = "x" * 60_000

    def turn(n: int) -> list[dict[str, object]]:
        return [{"type": "user_message", "message": big, "agent_id": f"alice-{n}"}]

    counts = alice_clients(server, seconds, 8, 2, turn, pause=0.0)
    keys = list(server.redis_client.scan_iter(count=1000))
    no_ttl = sum(1 for key in keys if server.redis_client.ttl(key) == -1)
    return {**counts, "keys": len(keys), "keys_without_ttl": no_ttl}


def attack_channels(server: Server, seconds: float) -> dict[str, object]:
    """#4: subscribe with since, then unsubscribe, fresh ids, ~90 requests/s a connection."""

    def turn(n: int) -> list[dict[str, object]]:
        agent = f"alice-c{n}"
        return [
            {"type": "subscribe", "agent_id": agent, "since": 0},
            {"type": "unsubscribe", "agent_id": agent},
        ]

    counts = alice_clients(server, seconds, 4, 12, turn, pause=2 / 90)
    return {**counts, "channels": server.metric("agentcast_channels")}


def flood(server: Server, seconds: float, source: str, opening: bytes, unit: bytes) -> dict:
    """Write ``opening`` then ``unit`` over and over; how many were taken, and how it ended."""
    sock = tls_socket(server, source)
    head = upgrade(sock, f"/?token={token('alice', agents=['alice-*'])}")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        sock.close()
        return {"refused": head.split(b"\r\n", 1)[0].decode(errors="replace")}
    sock.sendall(opening)
    batch = unit * 1000
    frames, ended = 0, "still open at the deadline"
    started = time.monotonic()
    deadline = started + seconds
    sock.settimeout(1)
    try:
        while time.monotonic() < deadline:
            sock.sendall(batch)
            frames += 1000
    except (OSError, ssl.SSLError) as exc:
        ended = f"{type(exc).__name__} after {time.monotonic() - started:.2f} s"
    close = b""
    with contextlib.suppress(OSError, ssl.SSLError):
        sock.settimeout(1)
        while len(close) < 4:
            chunk = sock.recv(4096)
            if not chunk:
                break
            close += chunk
    sock.close()
    code = int.from_bytes(close[2:4], "big") if close[:1] == b"\x88" else None
    return {"frames": frames, "ended": ended, "close_code": code}


def attack_pong(server: Server, seconds: float) -> dict[str, object]:
    return flood(server, seconds, "127.0.0.20", b"", masked(0xA, b""))


def attack_fragments(server: Server, seconds: float) -> dict[str, object]:
    return flood(
        server, seconds, "127.0.0.21", masked(0x1, b"a", fin=False), masked(0x0, b"", False)
    )


def client_hello() -> bytes:
    """The first flight of a real TLS client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def attack_tls(server: Server, seconds: float) -> dict[str, object]:
    """#7: 3,000 connections from one address, each sending half a ClientHello."""
    half = client_hello()[:60]
    sockets = []
    refused = 0
    for _ in range(3000):
        try:
            sock = socket.create_connection(
                ("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.30", 0)
            )
            sock.sendall(half)
            sockets.append(sock)
        except OSError:
            refused += 1

    def still_open() -> int:
        alive = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                alive += sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    after_1s = (time.sleep(1.0), still_open())[1]
    time.sleep(max(0.0, seconds - 1.0))
    after = still_open()
    for sock in sockets:
        sock.close()
    return {
        "connections": len(sockets),
        "refused": refused,
        "open_after_1s": after_1s,
        f"open_after_{seconds:g}s": after,
    }


def attack_http(server: Server, seconds: float) -> dict[str, object]:
    """#8: a path urlsplit cannot parse, and an Origin it cannot either, with auth on."""
    statuses: dict[str, str] = {}
    tries = [
        ("path //[", "//[", ""),
        (
            "origin http://[",
            f"/?token={token('alice', agents=['alice-*'])}",
            "Origin: http://[\r\n",
        ),
    ]
    for name, path, headers in tries:
        for _ in range(50):
            sock = tls_socket(server, "127.0.0.40")
            head = upgrade(sock, path, headers)
            sock.close()
            statuses[name] = head.split(b"\r\n", 1)[0].decode(errors="replace")
    return statuses


ATTACKS: dict[str, Callable[[Server, float], dict[str, object]]] = {
    "redis": attack_redis,
    "channels": attack_channels,
    "pong": attack_pong,
    "fragments": attack_fragments,
    "tls": attack_tls,
    "http": attack_http,
}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def report(phases: list[Phase], control: Control) -> None:
    print(
        f"{'phase':<10} {'rtt p50':>8} {'p99':>8} {'max':>8} {'RSS MiB':>8} {'Redis MiB':>9} "
        f"{'ERRORs':>6}  seen"
    )
    for phase in phases:
        rtts = [1000 * rtt for rtt in control.during(phase)]
        print(
            f"{phase.name:<10} {percentile(rtts, 50):8.2f} {percentile(rtts, 99):8.2f} "
            f"{max(rtts, default=float('nan')):8.2f} {phase.rss_mib:8.1f} {phase.redis_mib:9.1f} "
            f"{phase.errors:6d}  {orjson.dumps(phase.seen).decode()}"
        )
    if control.failure:
        print(f"the control client was cut off: {control.failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="each attack's length")
    parser.add_argument("--channel-ttl", type=float, default=8.0, help="the server's")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("hostile.py: needs redis-server (apt-get install -y redis-server)")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    with tempfile.TemporaryDirectory() as directory:
        server = Server(Path(directory), args.channel_ttl)
        control = Control(server)
        phases: list[Phase] = []
        logged = 0

        def close(phase: Phase) -> None:
            nonlocal logged
            phase.ended = time.monotonic()
            phase.rss_mib, phase.redis_mib = server.rss_mib(), server.redis_mib()
            lines = server.log_lines()
            phase.errors = sum(" ERROR " in line or "Traceback" in line for line in lines[logged:])
            logged = len(lines)
            phases.append(phase)

        try:
            control.start()
            idle = Phase("idle", time.monotonic())
            time.sleep(2)
            close(idle)
            for name, attack in ATTACKS.items():
                phase = Phase(name, time.monotonic())
                phase.seen = attack(server, args.seconds)
                close(phase)
            after = Phase("after", time.monotonic())
            time.sleep(args.channel_ttl + 4)
            keys = list(server.redis_client.scan_iter(count=1000))
            after.seen = {"redis_keys": len(keys), "channels": server.metric("agentcast_channels")}
            close(after)
        finally:
            control.stop()
            server.stop()
        report(phases, control)
        print(
            f"server pid exit {server.serve.returncode}; machine: {os.cpu_count()} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
        )


if __name__ == "__main__":
    main()
