"""A backend written like MemGPT's ``SyncServer`` runs on agentcast's interface: it once
got ``agent_response_error ... has no attribute 'step_yield'`` on every message.

``MemGPTStyleServer`` calls the interface exactly as MemGPT 0.3.18-0.3.25 do for one
user message: ``Agent.step`` reports the user's message, its thought and the function
it runs (``send_message`` calls ``assistant_message``), ``SyncServer._step`` calls
``step_complete`` after each step of the heartbeat chain and ``step_yield`` at its end.
"""

from __future__ import annotations

import inspect
from typing import Any

import websockets

from agentcast import AsyncWebSocketInterface, SyncWebSocketInterface
from agentcast.memgpt.app import AgentServer
from clients import memgpt_exchange, run, user_message


class MemGPTStyleServer:
    """``SyncServer.user_message`` -> ``_step``: two chained steps (a heartbeat), then yield."""

    def __init__(self, default_interface: SyncWebSocketInterface) -> None:
        self.interface = default_interface

    def create_agent(self, user_id: str, agent_config: dict[str, Any]) -> str:
        return str(agent_config["name"])

    def user_message(self, user_id: str, agent_id: str, message: str) -> None:
        interface = self.interface
        token_streaming = getattr(interface, "streaming_mode", False)  # as _step reads it
        assert token_streaming is False
        interface.user_message(message, msg_obj={"role": "user", "text": message})
        for step, heartbeat in enumerate((True, False)):
            msg_obj = {"role": "assistant", "step": step}
            interface.internal_monologue(f"thinking about {message!r} ({step})", msg_obj=msg_obj)
            arguments = f"{{'message': 'reply {step}', 'request_heartbeat': {heartbeat}}}"
            interface.function_message(f"Running send_message({arguments})", msg_obj=msg_obj)
            interface.assistant_message(f"reply {step}")  # send_message's own call
            interface.function_message(f"Ran send_message({arguments})", msg_obj=msg_obj)
            interface.function_message("Success: None", msg_obj=msg_obj)
            interface.step_complete()
        interface.step_yield()


def test_a_memgpt_style_backend_streams_its_steps_and_ends_without_error() -> None:
    with AgentServer(MemGPTStyleServer, port=0) as server:

        async def scenario() -> list[dict[str, Any]]:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}") as websocket:
                return await memgpt_exchange(websocket, user_message("hello", "memgpt-agent"))

        replies = run(scenario())
    assert [reply["type"] for reply in replies] == [
        "agent_response_start",
        *["agent_response"] * 10,
        "agent_response_end",
    ], replies
    said = [(reply["message_type"], reply["message"]) for reply in replies[1:-1]]
    assert said[:5] == [
        ("internal_monologue", "thinking about 'hello' (0)"),
        (
            "function_message",
            "Running send_message({'message': 'reply 0', 'request_heartbeat': True})",
        ),
        ("assistant_message", "reply 0"),
        ("function_message", "Ran send_message({'message': 'reply 0', 'request_heartbeat': True})"),
        ("function_message", "Success: None"),
    ]
    assert said[7] == ("assistant_message", "reply 1")
    # The step is a run: run_start is seq 1, the ten messages 2..11.
    assert [reply["seq"] for reply in replies[1:-1]] == list(range(2, 12))
    assert {reply["agent_id"] for reply in replies[1:-1]} == {"memgpt-agent"}


# What MemGPT's interfaces define for a caller (AgentInterface, BaseWebSocketInterface,
# Sync/AsyncWebSocketInterface in 0.2.3-0.3.25; step_complete from 0.3.18), with the
# parameters a caller passes. Their own helpers (_run_async, ...) are not for callers.
MEMGPT_METHODS = {
    "register_client": ["websocket"],
    "unregister_client": ["websocket"],
    "user_message": ["msg", "msg_obj"],
    "internal_monologue": ["msg", "msg_obj"],
    "assistant_message": ["msg", "msg_obj"],
    "function_message": ["msg", "msg_obj"],
    "step_yield": [],
    "step_complete": [],
    "close": [],
}


def test_both_interfaces_take_every_call_memgpt_makes() -> None:
    for interface in (SyncWebSocketInterface, AsyncWebSocketInterface):
        for name, parameters in MEMGPT_METHODS.items():
            signature = inspect.signature(getattr(interface, name))
            assert list(signature.parameters)[1:] == parameters, (interface, name)
    # MemGPT's async interface inherits the step hooks from its base: plain calls there too.
    assert not inspect.iscoroutinefunction(AsyncWebSocketInterface.step_yield)
    assert not inspect.iscoroutinefunction(AsyncWebSocketInterface.step_complete)
