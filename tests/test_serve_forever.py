"""``serve_forever()`` and what ``agentcast serve`` says: real processes, real signals."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from agentcast import Broadcaster
from redis_server import RedisServer, free_port

AGENTCAST = [sys.executable, "-m", "agentcast"]

# An embedding script: it greets each client, serves until a signal, then says what it saw.
SCRIPT = """
from agentcast import Broadcaster

hub = Broadcaster(port=0, on_connect=lambda client_id: hub.send(client_id, "hello"))
if {prestarted}:
    hub.start()
stats = hub.serve_forever(ready=lambda: print("ready", hub.port, flush=True))
print("stopped with", stats["clients"], "client(s)", flush=True)
"""


def closed_code(client: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=10)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("prestarted", [True, False], ids=["started-before", "started-by-it"])
def test_serve_forever_serves_until_a_signal_then_closes_1001(
    stop: signal.Signals, prestarted: bool
) -> None:
    with _embedded(prestarted) as (process, port):
        with connect(f"ws://127.0.0.1:{port}/") as client:
            assert client.recv(timeout=10) == '"hello"'  # registered: the greeting came
            process.send_signal(stop)
            assert closed_code(client) == 1001
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert out == "stopped with 1 client(s)\n"
    assert err == "", err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_right_after_ready_stops_it_cleanly(stop: signal.Signals) -> None:
    with _embedded(prestarted=True) as (process, _):
        process.send_signal(stop)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert out == "stopped with 0 client(s)\n"
    assert err == "", err


@contextlib.contextmanager
def _started(argv: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``argv`` running with its output piped, and the first line it printed; killed on the
    way out if it has not exited by then."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            yield process, process.stdout.readline()
        finally:
            if process.poll() is None:
                process.kill()


@contextlib.contextmanager
def _embedded(prestarted: bool) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The embedding script, once it said it is ready, and its port."""
    with _started([sys.executable, "-c", SCRIPT.format(prestarted=prestarted)]) as (
        process,
        first,
    ):
        word, port = first.split()
        assert word == "ready"
        yield process, int(port)


def _connect_when_listening(port: int, process: subprocess.Popen[str]) -> ClientConnection:
    """A websockets client, once the server listens: refused connects are retried for
    up to 10 s (``serve_forever`` starting the server itself says nothing before)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return connect(f"ws://127.0.0.1:{port}/", open_timeout=10)
        except ConnectionRefusedError:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.05)  # the pace of retries, not a synchronization


def test_serve_forever_outside_the_main_thread_is_refused_before_starting() -> None:
    hub = Broadcaster(port=0)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            hub.serve_forever()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join(10)
    assert [str(e) for e in errors] == ["serve_forever() must be called from the main thread"]
    assert not hub.running


# An agent whose step never ends: a stop waits for it.
STUCK = """
import threading
from agentcast import AgentServer

class Stuck:
    def __init__(self, default_interface):
        pass

    def create_agent(self, user_id, agent_config):
        return "a"

    def user_message(self, user_id, agent_id, message):
        print("step", flush=True)
        threading.Event().wait()

server = AgentServer(Stuck, port=0)
server.serve_forever(ready=lambda: print("ready", server.port, flush=True))
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_ends_a_stop_that_waits_on_a_step_that_never_ends(
    stop: signal.Signals,
) -> None:
    with _started([sys.executable, "-c", STUCK]) as (process, first):
        port = int(first.split()[1])
        with connect(f"ws://127.0.0.1:{port}/") as client:
            client.send('{"type": "user_message", "message": "hi", "agent_id": "a"}')
            assert process.stdout is not None and process.stdout.readline() == "step\n"
            process.send_signal(stop)  # the stop waits for the step: it would wait for ever
            assert process.stderr is not None
            hint = process.stderr.readline()  # after SLOW_STOP: the first signal was taken
            process.send_signal(stop)
            _, rest = process.communicate(timeout=15)
    assert process.returncode == 128 + stop, rest
    assert hint == (
        "agentcast: still stopping, waiting for what runs; a second Ctrl-C or SIGTERM exits now\n"
    )
    assert rest == (
        "agentcast: a second signal while stopping: exiting now, without waiting for what"
        " still runs\n"
    )


STOPPED = re.compile(
    r"agentcast: stopped after \d+\.\d s: \d+ messages published, 5 deliveries,"
    r" 1 client closed with 1001 \(going away\)"
)


def test_serve_says_listening_once_and_one_readable_line_on_exit() -> None:
    port = free_port()
    with _started([*AGENTCAST, "serve", "--port", str(port)]) as (process, first):
        assert first == (
            f"agentcast: serving ws://127.0.0.1:{port}/ (page: http://127.0.0.1:{port}/);"
            " Ctrl-C to stop\n"
        )
        with connect(f"ws://127.0.0.1:{port}/") as client:
            client.send('{"type": "user_message", "message": "hi", "agent_id": "a"}')
            while "agent_response_end" not in client.recv(timeout=10):
                pass
            process.send_signal(signal.SIGINT)
            assert closed_code(client) == 1001
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert STOPPED.fullmatch(out.strip()), out
    assert "listening" not in err and "{'" not in err, err


def test_serve_with_workers_says_listening_once_for_all_of_them(redis_server: RedisServer) -> None:
    port = free_port()
    argv = [*AGENTCAST, "serve", "--workers", "2", "--redis", redis_server.url]
    with _started([*argv, "--port", str(port)]) as (process, first):
        assert first == f"agentcast: 2 workers serving ws://127.0.0.1:{port}/; Ctrl-C to stop\n"
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(_connect_when_listening(port, process)) for _ in range(4)
            ]
            for client in clients:  # each worker answers, whichever the kernel chose
                client.send('{"type": "user_message", "message": "hi", "agent_id": "a"}')
                while "agent_response_end" not in client.recv(timeout=10):
                    pass
            process.send_signal(signal.SIGTERM)
            assert [closed_code(client) for client in clients] == [1001] * 4
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert re.fullmatch(r"agentcast: stopped after \d+\.\d s\n", out), out
