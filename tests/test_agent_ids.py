"""Agent ids are bounded: at most 256 bytes of UTF-8, printable characters only.

A client names an agent in user_message, subscribe, unsubscribe and create_agent's
config ``name``; an id out of bounds gets an error frame with ``"code": "bad_agent_id"``
that does not repeat it, and the connection stays usable.
"""

from __future__ import annotations

import orjson
import pytest
import websockets

from agentcast.memgpt.app import AgentServer
from clients import DEMO_STEP, memgpt_exchange, run, user_message

HUGE = "a" * 1_000_000
LONGEST = "\U0001f916" * 64  # 64 four-byte characters: exactly 256 bytes of UTF-8


def _requests(agent_id: str) -> list[tuple[dict, str]]:
    """Every client message that names an agent, with the reply type its error gets."""
    return [
        (user_message("hi", agent_id), "agent_response_error"),
        ({"type": "subscribe", "agent_id": agent_id}, "server_error"),
        ({"type": "unsubscribe", "agent_id": agent_id}, "server_error"),
        (
            {"type": "command", "command": "create_agent", "config": {"name": agent_id}},
            "server_error",
        ),
    ]


@pytest.mark.parametrize(
    "agent_id",
    [HUGE, LONGEST + "x", "a" * 257, "line\nbreak", "nul\x00", "bell\x07", "rtl\u202eoverride"],
    ids=["1e6-chars", "257-bytes-utf8", "257-ascii", "newline", "nul", "bell", "bidi-override"],
)
def test_an_agent_id_out_of_bounds_gets_bad_agent_id_and_the_connection_stays(
    agent_id: str,
) -> None:
    # Room for the 1e6-character id: the default 64 KiB message limit would close it 1009
    # before the id is looked at; an embedder may raise that limit.
    with AgentServer(port=0, max_message_size=4 * 1024 * 1024) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
                for request, reply_type in _requests(agent_id):
                    await ws.send(orjson.dumps(request).decode())
                    raw = await ws.recv()
                    reply = orjson.loads(raw)
                    assert (reply["type"], reply.get("code")) == (reply_type, "bad_agent_id"), reply
                    assert len(raw) < 1024, len(raw)
                replies = await memgpt_exchange(ws, user_message("still served", "ok"))
                assert [r["type"] for r in replies] == DEMO_STEP

        run(scenario())


@pytest.mark.parametrize("agent_id", [LONGEST, "a" * 256, "agent 1 · ünïcode ✓", "x"])
def test_an_agent_id_within_bounds_is_served(agent_id: str) -> None:
    with AgentServer(port=0) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
                replies = await memgpt_exchange(ws, user_message("hi", agent_id))
                assert [r["type"] for r in replies] == DEMO_STEP
                assert {r["agent_id"] for r in replies[1:4]} == {agent_id}
                for request, _ in _requests(agent_id)[1:]:
                    reply = (await memgpt_exchange(ws, request))[-1]
                    assert reply["type"] == "command_response", reply
                    assert reply["status"].startswith("OK"), reply

        run(scenario())
