"""Faults around the core: unrouted agent messages, foreign connections, shutdown races."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentcast.app import AgentServer
from agentcast.interface import SyncWebSocketInterface
from clients import memgpt_exchange, run, user_message, websockets_clients


@pytest.fixture
def server_factory() -> Iterator[Callable[..., AgentServer]]:
    servers: list[AgentServer] = []

    def start(*args: Any, **kwargs: Any) -> AgentServer:
        kwargs.setdefault("port", 0)
        server = AgentServer(*args, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class ThreadedAgent:
    """A backend that, like some MemGPT setups, also speaks from a thread of its own."""

    def __init__(self, default_interface: SyncWebSocketInterface) -> None:
        self.interface = default_interface

    def create_agent(self, user_id: str, agent_config: dict[str, Any]) -> None:
        pass

    def user_message(self, user_id: str, agent_id: str, message: str) -> None:
        self.interface.internal_monologue(f"{agent_id} thinks")
        helper = threading.Thread(target=self.interface.assistant_message, args=("unrouted",))
        helper.start()  # no serving() context there: the message belongs to no agent
        helper.join()
        self.interface.assistant_message(f"{agent_id} answers")


def test_agent_message_outside_serving_reaches_no_client(
    server_factory: Callable[..., AgentServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory(ThreadedAgent, route="agent")

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{server.port}", 2) as (alice, bob):
            before = await memgpt_exchange(bob, user_message("hi", "agent-b"))
            own = await memgpt_exchange(alice, user_message("hi", "agent-a"))
            after = await memgpt_exchange(bob, user_message("again", "agent-b"))
            # Bob was connected while agent-a's thread spoke: a broadcast would be first here.
            for replies, agent in ((before, "agent-b"), (own, "agent-a"), (after, "agent-b")):
                assert [r["type"] for r in replies] == [
                    "agent_response_start",
                    "agent_response",
                    "agent_response",
                    "agent_response_end",
                ], replies
                assert [r["message"] for r in replies[1:3]] == [
                    f"{agent} thinks",
                    f"{agent} answers",
                ]

    run(scenario())
    assert server.interface.unrouted == 3
    warnings = [r for r in caplog.records if r.name == "agentcast.interface"]
    assert [r.levelname for r in warnings] == ["WARNING"]  # once, not once per message
