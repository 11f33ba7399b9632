"""The demo backend keeps a bounded number of agents, each with a bounded config: it once
kept every create_agent config it was sent (10,000 of them: +11 MB, and again)."""

from __future__ import annotations

import functools

import orjson
import websockets

from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.backends import DemoAgentServer
from clients import DEMO_STEP, memgpt_exchange, run, user_message


def _create(name: str, **config: object) -> dict:
    return {"type": "command", "command": "create_agent", "config": {"name": name, **config}}


def test_the_demo_backend_keeps_the_agents_used_last() -> None:
    backend = functools.partial(DemoAgentServer, max_agents=5)
    with AgentServer(backend, port=0, max_message_rate=0) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
                for i in range(5):
                    await memgpt_exchange(ws, _create(f"agent-{i}"))
                replies = await memgpt_exchange(ws, user_message("hi", "agent-0"))  # used again
                assert [r["type"] for r in replies] == DEMO_STEP
                for i in range(5, 20):
                    replies = await memgpt_exchange(ws, _create(f"agent-{i}"))
                    assert replies == [
                        {"type": "command_response", "status": "OK: Agent initialized"}
                    ]
                    assert len(server.backend.agents) <= 5
                assert list(server.backend.agents) == [f"agent-{i}" for i in range(15, 20)]

        run(scenario())


def test_a_config_over_the_bound_is_refused_and_not_kept() -> None:
    limit = DemoAgentServer.MAX_CONFIG_BYTES
    with AgentServer(port=0) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
                big = _create("big", padding="p" * limit)
                [reply] = await memgpt_exchange(ws, big)
                assert reply["type"] == "command_response"
                assert reply["status"].startswith("Error: Failed to init agent"), reply
                assert f"{limit} bytes" in reply["status"]
                assert "big" not in server.backend.agents
                fits = _create("fits", padding="p" * (limit - 100))
                assert len(orjson.dumps(fits["config"])) <= limit
                [reply] = await memgpt_exchange(ws, fits)
                assert reply == {"type": "command_response", "status": "OK: Agent initialized"}
                assert "fits" in server.backend.agents

        run(scenario())
