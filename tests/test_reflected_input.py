"""Client input is never reflected in full: error frames and log lines quote a short,
escaped excerpt of it (an unknown type of 500,000 characters once came back whole)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import pytest
import websockets

from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.interface import SyncWebSocketInterface
from agentcast.serve.connect_log import BURST, RATE
from clients import DEMO_STEP, memgpt_exchange, run, user_message

HUGE = "\x1b[2J" + "x" * 500_000  # a terminal escape first: it must reach no log raw
LARGE = HUGE[:100_000]
EXCERPT = "x" * 16
SHORT_REPLY = 1024
SHORT_LOG_LINE = 512


class RaisingBackend:
    """A backend whose errors repeat what the client sent, as real ones may."""

    def __init__(self, default_interface: SyncWebSocketInterface) -> None:
        self.interface = default_interface

    def create_agent(self, user_id: str, agent_config: dict[str, Any]) -> None:
        raise ValueError(f"bad config {agent_config}")

    def user_message(self, user_id: str, agent_id: str, message: str) -> None:
        if message != "ok":
            raise ValueError(f"cannot answer {message}")
        self.interface.assistant_message("fine")


BAD_REQUESTS = {
    "unknown-type": {"type": HUGE},
    "unknown-type-object": {"type": {LARGE: [LARGE] * 3, "k": {"n": LARGE}}},
    "unknown-command": {"type": "command", "command": HUGE},
    "backend-create-agent": {"type": "command", "command": "create_agent", "config": {"x": HUGE}},
    "backend-user-message": user_message(HUGE, "a"),
}


# Room for the huge requests: the 64 KiB default would close them 1009 unread; an
# embedder may raise that limit, and then nothing of them may come back whole.
ROOMY = 1024 * 1024


@pytest.mark.parametrize("request_body", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_huge_bad_request_gets_a_short_reply_and_short_log_lines(
    request_body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # agentcast serve's default level
    with AgentServer(RaisingBackend, port=0, max_message_size=ROOMY) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
                await ws.send(orjson.dumps(request_body).decode())
                while True:  # a user_message is answered start, error, end
                    raw = await ws.recv()
                    assert len(raw) < SHORT_REPLY, len(raw)
                    reply = orjson.loads(raw)
                    if reply["type"] in ("server_error", "command_response"):
                        break
                    if reply["type"] == "agent_response_error":
                        assert orjson.loads(await ws.recv())["type"] == "agent_response_end"
                        break
                assert EXCERPT in reply.get("message", reply.get("status")), reply  # quoted
                replies = await memgpt_exchange(ws, user_message("ok", "a"))
                assert [r["type"] for r in replies] == [
                    "agent_response_start",
                    "agent_response",
                    "agent_response_end",
                ]

        run(scenario())
    lines = [record.getMessage() for record in caplog.records]
    assert any(EXCERPT in line for line in lines), lines  # the error was logged
    assert all(len(line) < SHORT_LOG_LINE and "\x1b" not in line for line in lines), [
        line[:100] for line in lines
    ]


def test_the_demo_agent_still_answers_in_full() -> None:
    """Quoting is for errors: a valid message up to max_message_size is served whole."""
    with AgentServer(port=0, max_message_size=ROOMY) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
                replies = await memgpt_exchange(ws, user_message("y" * 100_000, "a"))
                assert [r["type"] for r in replies] == DEMO_STEP
                assert replies[3]["message"] == "You said: " + "y" * 100_000

        run(scenario())


def test_the_interface_logs_an_excerpt_of_the_user_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentcast.interface")
    interface = SyncWebSocketInterface()
    try:
        interface.user_message(HUGE)
    finally:
        interface.close()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("user message")]
    assert EXCERPT in line and len(line) < SHORT_LOG_LINE and "\x1b" not in line, len(line)


CLIPBOARD_WRITE = "\x1b]52;c;aGVsbG8=\x07"  # OSC 52: a terminal that obeys it sets the clipboard


def test_agent_text_in_the_debug_log_has_its_control_characters_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Agent text is logged whole at DEBUG, but a shared agent's escapes and newlines are
    written as escapes: they neither reach a terminal tailing the log nor forge a line."""
    caplog.set_level(logging.DEBUG, logger="agentcast.interface")
    interface = SyncWebSocketInterface()
    try:
        with interface.serving("a"):
            interface.assistant_message(f"copy {CLIPBOARD_WRITE}\nFAKE LINE\x9b2J")
    finally:
        interface.close()
    [line] = [r.getMessage() for r in caplog.records if "assistant_message" in r.getMessage()]
    assert line == "a assistant_message: copy \\x1b]52;c;aGVsbG8=\\x07\\nFAKE LINE\\x9b2J", line


def test_invalid_json_is_answered_every_time_counted_and_logged_once_per_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # agentcast serve's default level
    with AgentServer(port=0) as server:

        async def scenario() -> None:
            for _ in range(2):  # two connections: one line each
                async with websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
                    for _ in range(20):
                        await ws.send("{not json")
                        reply = orjson.loads(await ws.recv())
                        assert reply["type"] == "server_error", reply
                        assert "not valid JSON" in reply["message"], reply

        run(scenario())
        assert server.stats()["invalid_requests"] == 40
    lines = [r.getMessage() for r in caplog.records if "not valid JSON" in r.getMessage()]
    assert len(lines) == 2, lines
    assert all("further ones on this connection are only counted" in line for line in lines)


def test_a_flood_of_connections_each_sending_one_bad_request_is_counted_not_logged_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each connection's first bad request is its own first: without a bound across
    connections a connect flood wrote one line each (1000 connections, 1000 lines)."""
    caplog.set_level(logging.INFO)
    connections = BURST + 60
    with AgentServer(port=0) as server:

        async def one(gate: asyncio.Semaphore) -> None:
            async with gate, websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
                await ws.send("{not json")
                assert "not valid JSON" in orjson.loads(await ws.recv())["message"]

        async def flood() -> None:
            gate = asyncio.Semaphore(20)
            await asyncio.gather(*(one(gate) for _ in range(connections)))

        started = time.monotonic()
        run(flood())
        elapsed = time.monotonic() - started
        assert server.stats()["invalid_requests"] == connections
    lines = [r for r in caplog.records if "not valid JSON" in r.getMessage()]
    assert len(lines) <= BURST + RATE * elapsed + 1, (len(lines), elapsed)
