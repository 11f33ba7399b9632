"""Every ```python block of the README and of the docs' pages runs, and does what its page
says it does.

Each block runs as written, as a script in a directory of its own (a subprocess with
a bounded timeout), with one substitution: ``redis://127.0.0.1:6379/0`` becomes the URL of
a redis-server the test started. A block that serves binds a free port (``port=0``, so it
runs beside a quick-start server on 8282) and prints the URL it got; a real ``websockets``
client checks what the page promises, then SIGINT and a clean exit. A block that is not
meant to run says why in ``<!-- not run: reason -->`` right before it. Blocks are named
``page:line``.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from agentcast import AgentServer
from doc_pages import doc_pages, where
from redis_server import RedisServer

BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>[^>]+) -->\n)?```python\n(?P<code>.*?)```", re.S)
QUICK_START_PORT = re.compile(r"port=8282|:8282")
LISTENING = re.compile(r"ws://127\.0\.0\.1:(\d+)/")
TIMEOUT = 30.0  # seconds a block that does not serve may take
MAX_NOT_RUN = 0  # blocks marked "not run": keep them few, each with its reason


@dataclass(frozen=True)
class Block:
    where: str  # page:line
    code: str
    not_run: str | None  # why not, for a block marked so


def doc_blocks() -> list[Block]:
    blocks = []
    for page in doc_pages():
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code")) + 1
            blocks.append(Block(where(page, line), match["code"], match["reason"]))
    return blocks


def test_every_python_block_runs_or_says_why_not() -> None:
    blocks = doc_blocks()
    assert len(blocks) >= 8, "the pages' python blocks were not found"
    not_run = [f"{block.where}: {block.not_run}" for block in blocks if block.not_run]
    assert len(not_run) <= MAX_NOT_RUN, not_run


def test_no_block_binds_the_quick_start_port() -> None:
    """With `agentcast serve` still running on 8282, an example that binds it dies with
    an OSError: the examples take a free port and print it."""
    assert [block.where for block in doc_blocks() if QUICK_START_PORT.search(block.code)] == []


# ---- running a block ---------------------------------------------------------------


def script(block: Block, directory: Path, redis_url: str | None = None) -> Path:
    code = block.code
    if redis_url is not None:
        code = code.replace("redis://127.0.0.1:6379/0", redis_url)
    path = directory / (re.sub(r"\W", "_", block.where) + ".py")
    path.write_text(code)
    return path


def run_to_the_end(path: Path) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            [sys.executable, path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"{path.name} did not finish in {TIMEOUT:g} s: a block that serves needs a check"
            " in CHECKS (a client, then SIGINT), or <!-- not run: reason --> before it"
        )
    assert result.returncode == 0, result.stderr
    return result


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    out: str = ""  # what it printed after the line saying where it serves


@contextlib.contextmanager
def serving(path: Path) -> Iterator[Served]:
    """Start the block and hand it over once it says where it serves. The caller stops it
    (SIGINT); then it must exit 0 with nothing on stderr."""
    process = subprocess.Popen(
        [sys.executable, path.name],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = LISTENING.search(first)
        if found is None:
            process.kill()
            pytest.fail(f"the block never said where it serves: {first!r} {process.communicate()}")
        served = Served(process, f"ws://127.0.0.1:{found[1]}/")
        yield served
        served.out, errors = process.communicate(timeout=15)
        assert process.returncode == 0, errors
        assert errors == "", errors
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def receive_until(client: ClientConnection, done: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """Messages until one satisfies ``done`` (each read bounded by 10 s)."""
    messages = []
    while True:
        messages.append(json.loads(client.recv(timeout=10)))
        if done(messages[-1]):
            return messages


def close_code(client: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=10)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


# ---- what each block promises ---------------------------------------------------------


def check_agent_server(block: Block, tmp_path: Path) -> None:
    """The quick start: an agent that thinks, then echoes; a client chats with it."""
    with serving(script(block, tmp_path)) as served:
        with connect(served.url) as client:
            client.send(json.dumps({"type": "user_message", "message": "hello", "agent_id": "a1"}))
            step = receive_until(client, lambda m: m["type"] == "agent_response_end")
            served.process.send_signal(signal.SIGINT)
            assert close_code(client) == 1001
        assert [(m["type"], m.get("message_type"), m.get("message")) for m in step] == [
            ("agent_response_start", None, None),
            ("agent_response", "internal_monologue", "thinking..."),
            ("agent_response", "assistant_message", "echo: hello"),
            ("agent_response_end", None, None),
        ]


def check_broadcaster(block: Block, tmp_path: Path) -> None:
    """Ticks to every client; after any message, agent-1's thoughts too, with their seq."""
    with serving(script(block, tmp_path)) as served, connect(served.url) as client:
        tick = json.loads(client.recv(timeout=10))
        assert tick["type"] == "agent_response" and tick["message"].startswith("tick ")
        client.send("hi")
        ack = receive_until(client, lambda m: m["type"] == "command_response")[-1]
        assert ack["status"] == "OK: subscribed to agent-1"
        thought = receive_until(client, lambda m: m["message"].startswith("thought "))[-1]
        assert thought["seq"] == int(thought["message"].split()[1])
        served.process.send_signal(signal.SIGINT)
        assert close_code(client) == 1001
    assert re.fullmatch(r"published [\d,]+, delivered [\d,]+\n", served.out), served.out


def check_jwt(block: Block, tmp_path: Path) -> None:
    """Mints a token for user-42 with the secret it keeps in secret.key."""
    token = run_to_the_end(script(block, tmp_path)).stdout.strip()
    secret = (tmp_path / "secret.key").read_bytes().strip()
    assert len(secret) >= 32
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0  # its owner's only
    claims = jwt.decode(token, secret, ["HS256"])
    assert claims["sub"] == "user-42" and claims["agents"] == ["alice-*"]


def check_publisher(block: Block, tmp_path: Path, redis_server: RedisServer) -> None:
    """A worker with no clients publishes through Redis; a node's client gets both messages."""
    with (
        AgentServer(port=0, backplane=redis_server.url) as node,
        connect(f"ws://127.0.0.1:{node.port}/") as client,
    ):
        client.send(json.dumps({"type": "subscribe", "agent_id": "agent-1"}))
        assert json.loads(client.recv(timeout=10))["status"] == "OK: subscribed to agent-1"
        run_to_the_end(script(block, tmp_path, redis_server.url))
        received = [json.loads(client.recv(timeout=10)) for _ in range(2)]
    assert [(m["message"], m["seq"]) for m in received] == [
        ("hi", 1),
        ("hello from a worker", 2),
    ]


def check_run_stream(block: Block, tmp_path: Path) -> None:
    """Any message gets a streamed run: reasoning, a tool call with its result, a reply."""
    with (
        serving(script(block, tmp_path)) as served,
        connect(served.url + "?protocol=agentcast") as client,
    ):
        client.send(json.dumps({"type": "subscribe", "channel": "agent-1"}))
        events = receive_until(client, lambda m: m["type"] == "run_end")
        served.process.send_signal(signal.SIGINT)
        assert close_code(client) == 1001
    kinds = [m["type"] for m in events]
    assert kinds[0] == "run_start" and kinds.count("run_start") == 1
    assert [m["seq"] for m in events if "seq" in m] == list(range(1, 16))
    deltas = {}
    for m in events:
        if m["type"] in ("message_delta", "tool_call_delta"):
            key = m.get("message_id") or m["tool_call_id"]
            deltas[key] = deltas.get(key, "") + m["delta"]
    assert sorted(deltas.values()) == sorted(
        ["The user wants the weather.", '{"city": "Paris"}', "It is sunny."]
    )
    assert {"type": "tool_result", "content": "sunny, 21 C"}.items() <= next(
        m for m in events if m["type"] == "tool_result"
    ).items()


def check_client(block: Block, tmp_path: Path) -> None:
    """The Python client assembles the demo agent's streamed reply."""
    out = run_to_the_end(script(block, tmp_path)).stdout
    assert out == "[\"The user said 'hello'; I will echo it back.\", 'You said: hello']\n"


def check_letta(block: Block, tmp_path: Path) -> None:
    """Letta's chunks over WebSocket, joined by message id: the demo agent's run."""
    out = run_to_the_end(script(block, tmp_path)).stdout
    assert out.splitlines() == [
        "reasoning_message The user said 'hello'; I will echo it back.",
        'tool_call_message send_message {"message":"You said: hello"}',
        "tool_return_message OK",
        "assistant_message You said: hello",
        "stop_reason end_turn",
    ]


CHECKS: dict[str, Callable[..., None]] = {
    "AgentServer(MyAgents": check_agent_server,
    "Broadcaster(host=": check_broadcaster,
    "jwt.encode(": check_jwt,
    "Publisher(": check_publisher,
    "hub.run(": check_run_stream,
    "Client(f": check_client,
    "?protocol=letta": check_letta,
}


def _cases() -> list[Any]:
    cases = []
    for block in doc_blocks():
        if block.not_run:
            continue
        marks = [pytest.mark.redis] if "redis://" in block.code else []
        cases.append(pytest.param(block, id=block.where, marks=marks))
    return cases


@pytest.mark.parametrize("block", _cases())
def test_doc_block(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    checks = [check for snippet, check in CHECKS.items() if snippet in block.code]
    assert len(checks) <= 1, f"{block.where}: more than one check matches"
    if not checks:  # no promise beyond running: it must run to its end
        run_to_the_end(script(block, tmp_path))
    elif checks[0] is check_publisher:
        check_publisher(block, tmp_path, request.getfixturevalue("redis_server"))
    else:
        checks[0](block, tmp_path)
