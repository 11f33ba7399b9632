"""Faults around the core: unrouted agent messages, foreign connections, shutdown races."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import websockets

from agentcast import Broadcaster
from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.interface import SyncWebSocketInterface
from agentcast.serve.foreign import ForeignConnection
from agentcast.serve.loop import LoopThread
from clients import memgpt_exchange, run, user_message, wait_for, websockets_clients


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
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = AgentServer(ThreadedAgent, port=0, route="agent")

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

    with server:
        run(scenario())
    assert server.interface.unrouted == 3
    warnings = [r for r in caplog.records if r.name == "agentcast.interface"]
    assert [r.levelname for r in warnings] == ["WARNING"]  # once, not once per message


@contextlib.asynccontextmanager
async def app_server(
    interface: SyncWebSocketInterface, connections: list[ForeignConnection]
) -> AsyncIterator[str]:
    """An app's own websockets server, registering its connections the MemGPT way; it never
    unregisters them, as an app busy elsewhere would not."""

    async def handle_client(websocket: Any) -> None:
        interface.register_client(websocket)
        connections.append(interface._foreign[id(websocket)])
        await websocket.wait_closed()

    async with websockets.serve(handle_client, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_foreign_connection_that_keeps_up_ends_with_nothing_unsent() -> None:
    interface = SyncWebSocketInterface()
    messages = 5_000
    connections: list[ForeignConnection] = []

    async def scenario() -> None:
        async with (
            app_server(interface, connections) as url,
            websockets_clients(url, 1) as (client,),
        ):
            await wait_for(lambda: len(connections) == 1)
            for i in range(messages):
                interface.assistant_message(f"m{i}" + "x" * (i % 300))
            got = [orjson.loads(await client.recv()) for _ in range(messages)]
            assert [m["message"][: len(f"m{i}")] for i, m in enumerate(got)] == [
                f"m{i}" for i in range(messages)
            ]
            # What the core sees as this client's backlog is back to nothing, not drifting.
            await wait_for(lambda: connections[0]._queued() == 0, what=connections[0]._queued)

    try:
        run(scenario())
    finally:
        interface.close()


def test_stop_closes_a_foreign_connection_1001_without_waiting_for_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    interface = SyncWebSocketInterface()
    hub = interface.hub
    assert isinstance(hub, Broadcaster)
    connections: list[ForeignConnection] = []

    async def scenario() -> None:
        async with (
            app_server(interface, connections) as url,
            websockets_clients(url, 1) as (client,),
        ):
            await wait_for(lambda: hub.client_count == 1)
            for i in range(100):
                interface.assistant_message(f"m{i}")
            await asyncio.get_running_loop().run_in_executor(None, hub.stop, 10.0)
            aborted = [r.getMessage() for r in caplog.records if "aborting" in r.getMessage()]
            assert not aborted  # stop's drain saw the client go; it did not need the abort
            got = [orjson.loads(m)["message"] async for m in client]
            assert got == [f"m{i}" for i in range(100)]  # what was queued, then the close
            assert client.close_code == 1001

    try:
        run(scenario())
    finally:
        interface.close()


class BlockingAgent:
    """Agent "blocking" holds its worker until released; any other agent answers at once."""

    def __init__(self, default_interface: SyncWebSocketInterface) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def create_agent(self, user_id: str, agent_config: dict[str, Any]) -> None:
        pass

    def user_message(self, user_id: str, agent_id: str, message: str) -> None:
        if agent_id == "blocking":
            self.entered.set()
            self.release.wait(30)


def test_request_arriving_while_the_pool_shuts_down_is_refused_and_released() -> None:
    server = AgentServer(BlockingAgent, port=0, workers=1, max_in_flight=1).start()
    backend = server.backend
    assert isinstance(backend, BlockingAgent)

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{server.port}", 2) as (alice, bob):
            await alice.send(orjson.dumps(user_message("hold on", "blocking")).decode())
            await wait_for(backend.entered.is_set, what="the blocking step")
            await bob.send(orjson.dumps(user_message("hi", "other")).decode())
            assert orjson.loads(await bob.recv()) == {
                "type": "agent_response_start",
                "agent_id": "other",
            }
            # Bob's step waits for the one worker (or comes after the pool is shut down).
            stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
            reply = orjson.loads(await asyncio.wait_for(bob.recv(), 10))
            assert reply == {"type": "server_error", "message": "server is shutting down"}
            backend.release.set()
            await stopping

    async def after_restart() -> None:
        # Client ids start at 1 again: a count leaked for bob's id would answer "busy".
        async with websockets_clients(f"ws://127.0.0.1:{server.port}", 2) as clients:
            for client in clients:
                replies = await memgpt_exchange(client, user_message("hi", "other"))
                assert [r["type"] for r in replies] == [
                    "agent_response_start",
                    "agent_response_end",
                ], replies

    try:
        run(scenario())
        assert not server._in_flight  # every admitted request was released
        server.start()
        run(after_restart())
    finally:
        backend.release.set()
        server.stop()


def test_call_waiting_when_stop_gives_up_on_a_hung_loop_raises() -> None:
    loop_thread = LoopThread("agentcast-hung")

    async def nothing() -> None:
        pass

    loop_thread.start(nothing)
    thread = loop_thread.thread
    assert thread is not None
    hung, unhang = threading.Event(), threading.Event()

    def hang() -> None:
        hung.set()
        unhang.wait(30)

    outcome: list[object] = []

    def attach() -> None:
        try:
            outcome.append(loop_thread.call(lambda: "ran"))
        except RuntimeError as exc:
            outcome.append(exc)

    loop_thread.call_soon_threadsafe(hang)
    assert hung.wait(10)
    caller = threading.Thread(target=attach)
    caller.start()
    try:
        run(wait_for(lambda: bool(loop_thread._calls), what="the call queued behind the hang"))
        loop_thread.stop(nothing, timeout=0.1)  # shutdown cannot run: stop gives up
        caller.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError), outcome
        assert "stopped before running" in str(outcome[0])
    finally:
        unhang.set()
        caller.join(10)
        thread.join(10)
