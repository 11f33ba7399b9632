"""docs/protocol.md's examples are what a real server answers: a drifting example fails.

Each ``<!-- send: NAME -->`` block is sent, one frame a line, by a ``websockets`` client
to a fresh ``AgentServer`` set up as ``SCENARIOS[NAME]`` says, and the frames it answers
must match the ``<!-- receive: NAME -->`` block, in order: the same keys, the same
values, but for a string ending in ``…`` (any string with that beginning) and a line
``...`` (any frames). ``<!-- frame: NAME -->`` blocks, which no client can provoke,
are the server's own builders' output. The close-code and HTTP-refusal tables are
checked by provoking each row the test can.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from agentcast import AgentServer, notices
from agentcast._slow import SLOW_CONSUMER_REASON
from agentcast.memgpt import protocol
from agentcast.memgpt.backends import DemoAgentServer
from agentcast.serve.auth import TOKEN_EXPIRED, JWTAuthenticator
from agentcast.serve.sessions import EXPIRED_REASON
from clients import masked_text, parse_frames, raw_upgrade

REFERENCE = Path(__file__).parent.parent / "docs" / "protocol.md"
TEXT = REFERENCE.read_text()
BLOCK = re.compile(r"<!-- (send|receive|frame): ([a-z_]+) -->\n```json\n(.*?)\n```", re.S)
ELIDED = "..."  # a receive line standing for any number of frames
ANY_END = "…"  # a string ending in it stands for any string with that beginning
TOKEN = "eyJ…"  # in a send block: the exchange's own token
SECRET = b"protocol-reference-secret-of-32-bytes!"
CLAIMS = {"sub": "user-42", "agents": ["alice-*"]}  # what the reference says the token holds
END_PROBE = "end-of-exchange"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Scenario:
    """How an exchange's server is set up, and what comes before it."""

    server: dict[str, Any] = field(default_factory=dict)  # AgentServer keywords
    query: str = ""
    token: bool = False  # the server authenticates; the client sends a token of CLAIMS
    after_hello: bool = False  # the demo agent has answered "hello" once
    more_follow: bool = False  # frames the reference does not show follow its last one


SLOW_DEMO = functools.partial(DemoAgentServer, word_delay=0.05)  # 4 steps still run at the 5th
SCENARIOS = {
    "create_agent": Scenario(),
    "user_message": Scenario(),
    "subscribe": Scenario(),
    "resume": Scenario(after_hello=True),
    "unsubscribe": Scenario(),
    "refresh": Scenario(token=True),
    "errors": Scenario(),
    "busy": Scenario(server={"backend": SLOW_DEMO}, more_follow=True),
    "forbidden": Scenario(token=True),
    "history_trimmed": Scenario(server={"history_size": 3}, after_hello=True),
    "channel_restarted": Scenario(after_hello=True),
    "too_many_subscriptions": Scenario(server={"max_subscriptions": 1}),
    "too_many_channels": Scenario(server={"max_channels": 1}),
    "native": Scenario(query="?protocol=agentcast"),
}
FRAMES = {
    "backend_failed": protocol.agent_response_error("server.user_message failed with: boom"),
    "backplane_restarted": notices.channel_restarted("demo", 41),
    "backplane_gap": notices.backplane_gap("demo", 42, 44),
    "broadcasts_lost": notices.broadcasts_lost(7, 10),
    "skipped": notices.skipped(3, [("demo", 42, 44)]),
}


def _blocks(kind: str) -> dict[str, list[list[Any]]]:
    """The reference's blocks of ``kind`` by exchange name, in the order they come."""
    found: dict[str, list[list[Any]]] = {}
    for match in BLOCK.finditer(TEXT):
        if match[1] == kind:
            lines = match[3].splitlines()
            frames = [ELIDED if line == ELIDED else json.loads(line) for line in lines]
            found.setdefault(match[2], []).append(frames)
    return found


SENDS = _blocks("send")
RECEIVES = _blocks("receive")


def _table(heading: str) -> list[tuple[int, str]]:
    """The first two columns (a number, a `quoted` text) of the table under ``heading``."""
    section = TEXT.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d{3,4}) \| `([^`]*)`", section, re.M)
    return sorted((int(number), text) for number, text in rows)


def matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and expected.endswith(ANY_END):
        return isinstance(actual, str) and actual.startswith(expected[: -len(ANY_END)])
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(value, actual[key]) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(map(matches, expected, actual))
        )
    return type(expected) is type(actual) and expected == actual


def _token(**extra: Any) -> str:
    return jwt.encode({**CLAIMS, "exp": int(time.time()) + 300, **extra}, SECRET, "HS256")


@contextlib.contextmanager
def serving(scenario: Scenario) -> Iterator[AgentServer]:
    options = dict(scenario.server)
    if scenario.token:
        options["authenticate"] = JWTAuthenticator(secret=SECRET)
    with AgentServer(port=0, **options) as server:
        if scenario.after_hello:
            _say_hello(server.port)
        yield server


def _with_token(frame: Any) -> Any:
    """``frame`` with the placeholder token replaced by a fresh one of ``CLAIMS``."""
    if isinstance(frame, dict) and frame.get("token") == TOKEN:
        return {**frame, "token": _token(exp=int(time.time()) + 600)}
    return frame


def _say_hello(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/") as websocket:
        websocket.send(json.dumps({"type": "user_message", "message": "hello", "agent_id": "demo"}))
        while json.loads(websocket.recv(TIMEOUT))["type"] != "agent_response_end":
            pass


def _receive(websocket: ClientConnection, expected: list[Any]) -> None:
    """Read frames until each expected one has come, in order; fail on any other."""
    got: list[Any] = []
    skipping = False
    for want in expected:
        if want == ELIDED:
            skipping = True
            continue
        while True:
            frame = json.loads(websocket.recv(TIMEOUT))
            got.append(frame)
            if matches(want, frame):
                break
            assert skipping, f"expected {want}\n     got {frame}\nafter {got[:-1]}"
        skipping = False


def _nothing_more(websocket: ClientConnection) -> None:
    """The next frame answers a probe sent now: nothing else was queued before it."""
    websocket.send(json.dumps({"type": "unsubscribe", "agent_id": END_PROBE}))
    frame = json.loads(websocket.recv(TIMEOUT))
    answered = (
        END_PROBE in (frame.get("agent_id"), frame.get("channel"))
        or frame.get("status") == f"OK: unsubscribed from {END_PROBE}"
    )
    assert answered, f"a frame the reference does not show: {frame}"


def test_the_reference_has_examples_and_each_has_a_scenario() -> None:
    assert set(SENDS) == set(RECEIVES) == set(SCENARIOS)
    assert set(_blocks("frame")) == set(FRAMES)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_an_exchange_gets_the_frames_the_reference_shows(name: str) -> None:
    scenario = SCENARIOS[name]
    with serving(scenario) as server:
        headers = {"Authorization": f"Bearer {_token()}"} if scenario.token else None
        url = f"ws://127.0.0.1:{server.port}/{scenario.query}"
        with connect(url, additional_headers=headers) as websocket:
            for sends, receives in zip(SENDS[name], RECEIVES[name], strict=True):
                for frame in sends:
                    websocket.send(json.dumps(_with_token(frame)))
                _receive(websocket, receives)
            if not scenario.more_follow:
                _nothing_more(websocket)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_a_frame_no_client_can_provoke_is_what_the_server_builds(name: str) -> None:
    [[shown]] = _blocks("frame")[name]
    assert matches(shown, json.loads(FRAMES[name]))


def _closed_with(websocket: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            websocket.recv(TIMEOUT)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def _closed_raw(port: int, data: bytes) -> tuple[int, str]:
    """The close a raw client gets for ``data``, frames no library client sends (or not in
    one write): the last frame before the server hangs up."""
    with raw_upgrade(port) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    opcode, payload = parse_frames(received)[-1]
    assert opcode == 0x8, received[-200:]
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def test_each_close_code_is_sent_with_the_reason_the_reference_gives() -> None:
    closes = _table("Close codes")
    described = dict(closes)  # the closes no test client can wait for: the server's words
    assert described[1013] == SLOW_CONSUMER_REASON
    assert described[TOKEN_EXPIRED] == EXPIRED_REASON
    seen = [(1013, SLOW_CONSUMER_REASON), (TOKEN_EXPIRED, EXPIRED_REASON)]
    with AgentServer(port=0, close_grace=0.2) as server:  # raw clients do not close back
        url = f"ws://127.0.0.1:{server.port}/"
        with connect(url, max_size=None) as websocket:
            websocket.send("x" * (64 * 1024 + 1))
            seen.append(_closed_with(websocket))
        with connect(url, max_size=None) as websocket:
            websocket.send(["x" * 40_000, "x" * 40_000])  # one message in two fragments
            seen.append(_closed_with(websocket))
        with connect(url) as websocket:
            websocket.send(b"\xff", text=True)
            seen.append(_closed_with(websocket))
        text = masked_text(b"{}")
        seen.append(
            _closed_raw(server.port, text * 150)
        )  # at once: over the rate, whatever the load
        seen.append(_closed_raw(server.port, bytes([text[0] | 0x40]) + text[1:]))  # RSV1
        going = connect(url)
    with going:
        seen.append(_closed_with(going))
    assert sorted(seen) == closes


def _refused(url: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, **kwargs).close()
    response = refused.value.response
    return response.status_code, response.body.decode().rstrip("\n")


def _plain_get(port: int, headers: dict[str, str]) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/nothing-here", headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode().rstrip("\n")
    finally:
        connection.close()


def test_each_http_refusal_has_the_status_and_body_the_reference_gives() -> None:
    refusals = dict(_table("HTTP refusals"))
    seen: dict[int, tuple[int, str]] = {}
    with AgentServer(port=0, max_clients=1) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        seen[400] = _refused(url + "?protocol=x")
        seen[403] = _refused(url, origin=Origin("https://elsewhere.example"))
        seen[404] = _plain_get(server.port, {})
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8"}
        seen[426] = _plain_get(server.port, {**upgrade, "Sec-WebSocket-Key": "a2V5a2V5a2V5a2V5"})
        with connect(url):
            seen[503] = _refused(url)
    with AgentServer(port=0, authenticate=JWTAuthenticator(secret=SECRET)) as server:
        seen[401] = _refused(f"ws://127.0.0.1:{server.port}/")
    with AgentServer(port=0, max_connect_rate=1) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        with connect(url):
            seen[429] = _refused(url)
    assert seen == {status: (status, body) for status, body in refusals.items()}
