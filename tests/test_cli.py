"""The command line as a newcomer runs it: real processes, real signals, real sockets."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from agentcast.memgpt.app import AgentServer
from clients import run, wait_for
from redis_server import free_port
from serve_cli import AGENTCAST, serving


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], int]]:
    with serving() as (process, port):
        yield process, port


def test_serve_then_client_as_in_the_readme(served: tuple[subprocess.Popen[str], int]) -> None:
    _, port = served
    result = subprocess.run(
        [*AGENTCAST, "client", f"ws://127.0.0.1:{port}/", "--agent-id", "demo"],
        input="hello\nhow are you\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "[reasoning] The user said 'hello'; I will echo it back.",
        '[tool send_message] {"message":"You said: hello"}',
        "[result send_message] OK",
        "[assistant] You said: hello",
    ]
    assert re.fullmatch(r"-- run success · took \d+\.\d\d s --", lines[4]), lines[4]
    assert "[assistant] You said: how are you" in lines[5:]


def test_word_delay_paces_the_demo_agents_stream() -> None:
    """A pause after each piece the demo agent streams: its run cannot end sooner than
    pieces x delay after the line was sent (sleep never returns early)."""
    delay = 0.05
    line = json.dumps({"type": "user_message", "channel": "d", "message": "pace me"})
    events = []
    with (
        serving("--word-delay", str(delay)) as (_, port),
        connect(f"ws://127.0.0.1:{port}/?protocol=agentcast") as client,
    ):
        sent = time.monotonic()
        client.send(line)
        while (event := json.loads(client.recv(timeout=30)))["type"] != "run_end":
            events.append(event)
        took = time.monotonic() - sent
    pieces = sum(event["type"] in ("message_delta", "tool_call_delta") for event in events)
    assert pieces >= 8, events
    assert took >= pieces * delay, (took, pieces)


def test_sigterm_closes_clients_1001_and_exits_0(served: tuple[subprocess.Popen[str], int]) -> None:
    process, port = served
    with connect(f"ws://127.0.0.1:{port}/") as client:
        client.send('{"type": "user_message", "message": "hi", "agent_id": "a"}')
        assert "agent_response_start" in client.recv(timeout=10)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert process.wait(timeout=15) == 0


def test_busy_port_is_a_one_line_error(served: tuple[subprocess.Popen[str], int]) -> None:
    _, port = served
    result = subprocess.run(
        [*AGENTCAST, "serve", "--port", str(port)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"agentcast: cannot listen on 127.0.0.1:{port}")
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "--port", "70000"], "expected a port 0-65535"),
        (["serve", "--route", "some"], "invalid choice"),
        (["serve", "--max-clients", "0"], "expected a whole number of at least 1"),
        (["serve", "--word-delay", "-1"], "expected seconds from 0 to 10"),
        (["serve", "--word-delay", "inf"], "expected seconds from 0 to 10"),
        (
            [
                "serve",
                "--backend",
                "agentcast.memgpt.backends:DemoAgentServer",
                "--word-delay",
                "1",
            ],
            "--word-delay paces the demo agent",
        ),
        (["serve", "--backend", "nope"], "module:attr"),
        (["serve", "--backend", "no_such_module_x:thing"], "cannot import"),
        (["client"], "--agent-id"),
        (["launch"], "invalid choice"),
        (["serve", "--workers", "2"], "--workers 2 needs --redis URL"),
        (["serve", "--reuse-port"], "--reuse-port needs --redis URL"),
        (["serve", "--workers", "2", "--redis", "redis://x", "--port", "0"], "fixed --port"),
    ],
)
def test_argument_errors_are_one_line_with_exit_2(args: list[str], words: str) -> None:
    result = subprocess.run([*AGENTCAST, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_unreachable_redis_is_a_one_line_error_with_exit_1() -> None:
    port = free_port()  # no Redis there
    result = subprocess.run(
        [*AGENTCAST, "serve", "--port", "0", "--redis", f"redis://127.0.0.1:{port}/0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"agentcast: cannot reach Redis at redis://127.0.0.1:{port}/0")
    ), result.stderr


def test_client_gives_up_after_bounded_reconnects_to_a_server_that_went_away() -> None:
    """Retries are for a server that was up and went away (a refused first connect ends at
    once: tests/test_client_cli.py)."""
    server = AgentServer(port=0).start()
    command = [*AGENTCAST, "client", f"ws://127.0.0.1:{server.port}/", "--agent-id", "a"]
    with subprocess.Popen(
        [*command, "--backoff", "0.01"],
        stdin=subprocess.PIPE,  # left open: only the retries end the client
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as client:
        try:
            run(wait_for(lambda: server.hub.client_count == 1, timeout=20, what="the client"))
        finally:
            server.stop()
        client.wait(timeout=30)
        assert client.stderr is not None
        stderr = client.stderr.read()
    assert client.returncode == 1, stderr
    assert "giving up" in stderr
    assert "after 6 attempts" in stderr  # the first and --retries 5 more


def test_bad_setting_values_are_one_line_with_exit_2() -> None:
    result = subprocess.run(
        [*AGENTCAST, "serve", "--port", "0", "--max-message-size", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--max-message-size" in lines[0], result.stderr


def test_serve_metrics_host_moves_the_metrics_port_off_loopback() -> None:
    metrics_port = free_port()
    options = ("--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.2")
    with serving(*options):
        with urllib.request.urlopen(f"http://127.0.0.2:{metrics_port}/healthz", timeout=10) as ok:
            assert ok.status == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", metrics_port), timeout=10).close()
