"""``agentcast serve --workers 2 --redis URL``: two processes on one port, supervised."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from agentcast.bench.harness import wait_until
from clients import DEMO_STEP, user_message
from redis_server import RedisServer, free_port

AGENTCAST = [sys.executable, "-m", "agentcast"]
TIMEOUT = 20.0


def workers_of(parent: int) -> set[int]:
    path = f"/proc/{parent}/task/{parent}/children"
    with open(path) as children:
        return {int(pid) for pid in children.read().split()}


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on ``port``."""
    inodes = _socket_inodes(pid)
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return any(
        r[3] == "0A" and int(r[1].split(":")[1], 16) == port and r[9] in inodes for r in rows
    )


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def server_pid_of(client: ClientConnection, workers: set[int]) -> int:
    """The worker that accepted ``client``: it owns the established socket whose peer is
    the client (rows in TIME_WAIT from earlier connections have no owner)."""
    server_port, client_port = client.socket.getpeername()[1], client.socket.getsockname()[1]
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    inode = next(
        r[9]
        for r in rows
        if r[3] == "01"
        and int(r[1].split(":")[1], 16) == server_port
        and int(r[2].split(":")[1], 16) == client_port
    )
    return next(pid for pid in workers if inode in _socket_inodes(pid))


@pytest.fixture
def two_workers(redis_server: RedisServer) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    parent = subprocess.Popen(
        [*AGENTCAST, "serve", "--workers", "2", "--redis", redis_server.url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        text=True,
    )
    wait_until(
        lambda: (
            len(workers_of(parent.pid)) == 2
            and all(listening(pid, port) for pid in workers_of(parent.pid))
        ),
        TIMEOUT,
        "two listening workers",
    )
    yield parent, port
    if parent.poll() is None:
        left = workers_of(parent.pid)
        parent.kill()  # its workers follow (parent-death signal); make sure of it
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    parent.wait(TIMEOUT)


@contextlib.contextmanager
def clients_of(port: int, count: int) -> Iterator[list[ClientConnection]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(connect(f"ws://127.0.0.1:{port}/")) for _ in range(count)]


def test_both_workers_serve_and_see_each_others_agents(
    two_workers: tuple[subprocess.Popen[str], int],
) -> None:
    parent, port = two_workers
    workers = workers_of(parent.pid)
    with clients_of(port, 40) as clients:
        served_by = {server_pid_of(c, workers) for c in clients}
        assert served_by == workers  # the kernel spread them over both
        watcher = next(c for c in clients if server_pid_of(c, workers) == min(workers))
        talker = next(c for c in clients if server_pid_of(c, workers) == max(workers))
        watcher.send(orjson.dumps({"type": "subscribe", "agent_id": "x"}).decode())
        assert orjson.loads(watcher.recv(TIMEOUT))["type"] == "command_response"
        talker.send(orjson.dumps(user_message("hello", "x")).decode())
        answered = [orjson.loads(talker.recv(TIMEOUT))["type"] for _ in DEMO_STEP]
        assert answered == DEMO_STEP
        watched = [orjson.loads(watcher.recv(TIMEOUT)) for _ in range(3)]  # on another worker
        assert [m["type"] for m in watched] == ["agent_response"] * 3
        seqs = [m["seq"] for m in watched]  # numbered through Redis, with the step's run
        assert 1 < seqs[0] < seqs[1] < seqs[2]
        assert {m["agent_id"] for m in watched} == {"x"}


def test_a_crashed_worker_is_restarted_and_sigterm_drains_both(
    two_workers: tuple[subprocess.Popen[str], int],
) -> None:
    parent, port = two_workers
    first = workers_of(parent.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(workers_of(parent.pid)) == 2 and victim not in workers_of(parent.pid),
        TIMEOUT,
        "a new worker in place of the killed one",
    )
    wait_until(
        lambda: all(listening(p, port) for p in workers_of(parent.pid)), TIMEOUT, "it listens"
    )
    workers = workers_of(parent.pid)
    with clients_of(port, 20) as clients:
        assert {server_pid_of(c, workers) for c in clients} == workers
        parent.send_signal(signal.SIGTERM)
        for client in clients:
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert parent.wait(TIMEOUT) == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)


def test_an_unreachable_redis_is_one_line_before_any_worker_starts() -> None:
    """As without --workers: not 'serving', then each worker failing in turn."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    command = [*AGENTCAST, "serve", "--workers", "2", "--redis", url, "--port", str(free_port())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"agentcast: cannot reach Redis at {url}: "), line
