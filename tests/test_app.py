"""The drop-in server end to end: MemGPT's example client, routing, every bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import websockets
from picows import WSMsgType, ws_connect

from agentcast.client.conversation import Conversation
from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.backends import DemoAgentServer
from agentcast.memgpt.interface import AsyncWebSocketInterface, SyncWebSocketInterface
from clients import (
    DEMO_STEP,
    Collector,
    memgpt_exchange,
    run,
    user_message,
    wait_for,
    websockets_clients,
)


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


def test_memgpt_example_client_gets_start_messages_end_every_time(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory()

    async def scenario() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as websocket:
            last_seq = 0
            for i in range(30):
                replies = await memgpt_exchange(websocket, user_message(f"hello {i}"))
                assert [r["type"] for r in replies] == DEMO_STEP
                assert [r.get("message_type") for r in replies[1:4]] == [
                    "internal_monologue",
                    "function_message",
                    "assistant_message",
                ]
                assert replies[3]["message"] == f"You said: hello {i}"
                assert {r["agent_id"] for r in replies[1:4]} == {"a1"}
                # A step is a run: its boundaries and deltas take seqs a MemGPT client
                # does not see, so its messages' seqs rise with gaps between them.
                seqs = [r["seq"] for r in replies[1:4]]
                assert last_seq < seqs[0] < seqs[1] < seqs[2]
                last_seq = seqs[2]

    run(scenario())


def test_two_steps_on_one_connection_pair_their_start_and_end_by_agent_id(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory()

    async def scenario() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as websocket:
            for agent_id in ("a1", "a2"):  # both in flight at once
                await websocket.send(orjson.dumps(user_message("hi", agent_id)).decode())
            bounds: list[tuple[str, str]] = []
            while sum(kind == "agent_response_end" for kind, _ in bounds) < 2:
                reply = orjson.loads(await websocket.recv())
                if reply["type"] in ("agent_response_start", "agent_response_end"):
                    bounds.append((reply["type"], reply["agent_id"]))
            for agent_id in ("a1", "a2"):
                assert [kind for kind, owner in bounds if owner == agent_id] == [
                    "agent_response_start",
                    "agent_response_end",
                ]

    run(scenario())


def test_create_agent_command(server_factory: Callable[..., AgentServer]) -> None:
    server = server_factory()

    async def scenario() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as websocket:
            replies = await memgpt_exchange(
                websocket, {"type": "command", "command": "create_agent", "config": {"name": "x"}}
            )
            assert replies == [{"type": "command_response", "status": "OK: Agent initialized"}]
        assert "x" in server.backend.agents

    run(scenario())


@pytest.mark.parametrize("route", ["agent", "all"])
def test_clients_see_their_own_agents_or_everything(
    server_factory: Callable[..., AgentServer], route: str
) -> None:
    server = server_factory(route=route)
    url = f"ws://127.0.0.1:{server.port}"

    async def drain(client: Any) -> list[dict[str, Any]]:
        extra = []
        while True:
            try:
                extra.append(orjson.loads(await asyncio.wait_for(client.recv(), 0.3)))
            except TimeoutError:
                return extra

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        async with websockets_clients(url, 2) as (alice, bob):
            seen: dict[str, list[dict[str, Any]]] = {"alice": [], "bob": []}
            for i in range(2):
                got_a, got_b = await asyncio.gather(
                    memgpt_exchange(alice, user_message(f"a{i}", "agent-a")),
                    memgpt_exchange(bob, user_message(f"b{i}", "agent-b")),
                )
                seen["alice"] += got_a
                seen["bob"] += got_b
            seen["alice"] += await drain(alice)
            seen["bob"] += await drain(bob)
            return seen

    seen = run(scenario())
    for name, own, other in (("alice", "agent-a", "agent-b"), ("bob", "agent-b", "agent-a")):
        agents = [m["agent_id"] for m in seen[name] if m["type"] == "agent_response"]
        assert agents.count(own) == 6
        assert agents.count(other) == (6 if route == "all" else 0)


def test_subscribe_to_another_agent(server_factory: Callable[..., AgentServer]) -> None:
    server = server_factory()
    url = f"ws://127.0.0.1:{server.port}"

    async def scenario() -> None:
        async with websockets_clients(url, 2) as (talker, watcher):
            ack = await memgpt_exchange(watcher, {"type": "subscribe", "agent_id": "a1"})
            assert ack == [{"type": "command_response", "status": "OK: subscribed to a1"}]
            await memgpt_exchange(talker, user_message("watched"))
            watched = [orjson.loads(await watcher.recv()) for _ in range(3)]
            assert [m["message_type"] for m in watched] == [
                "internal_monologue",
                "function_message",
                "assistant_message",
            ]
            await memgpt_exchange(watcher, {"type": "unsubscribe", "agent_id": "a1"})
            await memgpt_exchange(talker, user_message("not watched"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(watcher.recv(), 0.3)

    run(scenario())


class FailingBackend(DemoAgentServer):
    def user_message(self, user_id: str, agent_id: str, message: str) -> None:
        self.interface.internal_monologue("about to fail")
        raise RuntimeError("the model is down")


class SlowBackend(DemoAgentServer):
    release = threading.Event()

    def user_message(self, user_id: str, agent_id: str, message: str) -> None:
        self.release.wait(10)
        super().user_message(user_id, agent_id, message)


@pytest.mark.parametrize(
    ("payload", "reply_type", "words"),
    [
        ("{not json", "server_error", "not valid JSON"),
        (b'"\xff"', "server_error", "not UTF-8"),  # sent as binary: see the binary row
        ("[1, 2, 3]", "server_error", "expected a JSON object"),
        ('{"message": "no type"}', "server_error", "no type"),
        ('{"type": "dance"}', "server_error", "unrecognized client package data type"),
        ('{"type": "command", "command": "rm -rf"}', "server_error", "unrecognized client command"),
        ('{"type": "user_message", "message": "hi"}', "agent_response_error", "agent_id"),
        (
            '{"type": "user_message", "message": 42, "agent_id": "a1"}',
            "agent_response_error",
            "string",
        ),
    ],
)
def test_bad_input_gets_an_error_frame_and_the_connection_stays_usable(
    server_factory: Callable[..., AgentServer], payload: str | bytes, reply_type: str, words: str
) -> None:
    server = server_factory()
    url = f"ws://127.0.0.1:{server.port}"

    async def scenario() -> None:
        async with websockets_clients(url, 2) as (bad, bystander):
            if isinstance(payload, bytes):
                reply = await memgpt_exchange(bad, payload)
                assert reply == [
                    {
                        "type": "server_error",
                        "message": "binary frames are not supported; send JSON text",
                    }
                ]
            else:
                (reply,) = await memgpt_exchange(bad, payload)
                assert reply["type"] == reply_type
                assert words in reply["message"]
            good = await memgpt_exchange(bad, user_message("still here"))
            assert good[-1]["type"] == "agent_response_end"
            other = await memgpt_exchange(bystander, user_message("unaffected"))
            assert len(other) == 5

    run(scenario())


def test_invalid_utf8_text_frame_fails_the_connection_with_1007(
    server_factory: Callable[..., AgentServer],
) -> None:
    """RFC 6455 8.1: below the protocol, so no error frame: the connection fails, 1007."""
    server = server_factory()

    async def scenario() -> None:
        transport, listener = await ws_connect(Collector, f"ws://127.0.0.1:{server.port}/")
        transport.send(WSMsgType.TEXT, b'"\xff\xfe"')
        await wait_for(lambda: listener.close_code is not None)
        assert (listener.close_code, listener.messages) == (1007, [])
        await transport.wait_disconnected()

    run(scenario())


def test_oversize_frame_is_closed_1009(server_factory: Callable[..., AgentServer]) -> None:
    server = server_factory(max_message_size=4096)

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{server.port}", 2) as (bad, good):
            await bad.send("x" * 5000)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await bad.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            assert len(await memgpt_exchange(good, user_message("fine"))) == 5

    run(scenario())


def test_backend_failure_is_reported_then_ended(server_factory: Callable[..., AgentServer]) -> None:
    server = server_factory(FailingBackend)

    async def scenario() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as websocket:
            for _ in range(2):  # and the server keeps serving
                replies = await memgpt_exchange(websocket, user_message("hi"))
                assert replies[0]["type"] == "agent_response_start"
                assert replies[1]["message"] == "about to fail"
                assert replies[2] == {
                    "type": "agent_response_error",
                    "message": "server.user_message failed with: the model is down",
                }
                # MemGPT's client stops at the error; the end marker still follows it.
                assert orjson.loads(await websocket.recv()) == {
                    "type": "agent_response_end",
                    "agent_id": "a1",
                }

    run(scenario())


def test_flood_gets_busy_beyond_the_in_flight_bound(
    server_factory: Callable[..., AgentServer],
) -> None:
    SlowBackend.release.clear()
    server = server_factory(SlowBackend, max_in_flight=2)

    async def scenario() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as websocket:
            for i in range(5):
                await websocket.send(orjson.dumps(user_message(f"m{i}")).decode())
            replies = [orjson.loads(await websocket.recv()) for _ in range(5)]
            assert [r["type"] for r in replies].count("agent_response_start") == 2
            busy = [r for r in replies if r["type"] == "server_error"]
            assert len(busy) == 3 and all("busy" in r["message"] for r in busy)
            SlowBackend.release.set()
            rest = [orjson.loads(await websocket.recv()) for _ in range(2 * 4)]
            assert [r["type"] for r in rest].count("agent_response_end") == 2

    run(scenario())


def test_old_style_server_loop_with_register_client_still_delivers() -> None:
    """MemGPT's ws_api/server.py pattern: a websockets server registering its connections."""
    interface = SyncWebSocketInterface()
    try:

        async def scenario() -> None:
            registered = asyncio.Event()

            async def handle_client(websocket: Any) -> None:
                interface.register_client(websocket)
                registered.set()
                try:
                    await websocket.wait_closed()
                finally:
                    interface.unregister_client(websocket)

            async with websockets.serve(handle_client, "127.0.0.1", 0) as old_server:
                port = old_server.sockets[0].getsockname()[1]
                async with websockets.connect(f"ws://127.0.0.1:{port}") as client:
                    await registered.wait()
                    agent = threading.Thread(
                        target=lambda: [interface.assistant_message(f"m{i}") for i in range(100)]
                    )
                    agent.start()
                    got = [orjson.loads(await client.recv()) for _ in range(100)]
                    agent.join()
                    assert [m["message"] for m in got] == [f"m{i}" for i in range(100)]
                    assert {m["message_type"] for m in got} == {"assistant_message"}

        run(scenario())
    finally:
        interface.close()


def test_async_interface_returns_once_queued(server_factory: Callable[..., AgentServer]) -> None:
    server = server_factory()
    interface = AsyncWebSocketInterface(server.hub, route="agent")

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{server.port}", 3) as clients:
            for client in clients:
                await memgpt_exchange(client, {"type": "subscribe", "agent_id": "async-agent"})
            with interface.serving("async-agent"):
                await interface.internal_monologue("thinking")
                await interface.function_message("calling")
                await interface.assistant_message("done")
            for client in clients:
                got = [orjson.loads(await client.recv()) for _ in range(3)]
                assert [(m["message_type"], m["seq"]) for m in got] == [
                    ("internal_monologue", 1),
                    ("function_message", 2),
                    ("assistant_message", 3),
                ]
                assert {m["agent_id"] for m in got} == {"async-agent"}

    run(scenario())


def test_max_clients_is_answered_503_at_upgrade(server_factory: Callable[..., AgentServer]) -> None:
    server = server_factory(max_clients=2)
    url = f"ws://127.0.0.1:{server.port}"

    async def scenario() -> None:
        async with websockets_clients(url, 2) as (first, _):
            await wait_for(lambda: server.hub.client_count == 2)
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(url)
            assert refused.value.response.status_code == 503
            assert len(await memgpt_exchange(first, user_message("still served"))) == 5

    run(scenario())


def test_resume_after_disconnect_misses_nothing_and_repeats_nothing(
    server_factory: Callable[..., AgentServer],
) -> None:
    total = 20_000
    server = server_factory(history_size=total, history_bytes=64 << 20)
    url = f"ws://127.0.0.1:{server.port}"
    publishing = threading.Event()

    def publisher() -> None:
        publishing.wait(10)
        for i in range(total):
            server.hub.publish({"type": "agent_response", "message": f"m{i}"}, channel="stream")
            if i % 200 == 0:
                time.sleep(0.001)  # a stream, not one burst: the disconnect lands mid-way

    async def read_until(client: Any, done: Callable[[list[int]], bool], seqs: list[int]) -> None:
        while not done(seqs):
            message = orjson.loads(await client.recv())
            assert message["type"] == "agent_response", message
            seqs.append(message["seq"])

    async def scenario() -> list[int]:
        seqs: list[int] = []
        thread = threading.Thread(target=publisher)
        thread.start()
        async with websockets.connect(url, max_queue=None) as first:
            await memgpt_exchange(first, {"type": "subscribe", "agent_id": "stream"})  # the ack
            publishing.set()
            await read_until(first, lambda s: len(s) >= 7_000, seqs)
        async with websockets.connect(url, max_queue=None) as second:
            resume = {"type": "subscribe", "agent_id": "stream", "since": seqs[-1]}
            acked = await memgpt_exchange(second, resume)  # the ack first, then the replay
            assert [m["type"] for m in acked] == ["command_response"]
            await read_until(second, lambda s: s[-1] == total, seqs)
        thread.join()
        return seqs

    assert run(scenario()) == list(range(1, total + 1))


def test_resume_older_than_history_gets_the_gap_notice(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory(history_size=10)
    for i in range(50):
        server.hub.publish({"type": "agent_response", "message": f"m{i}"}, channel="short")

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as client:
            ack = await memgpt_exchange(
                client, {"type": "subscribe", "agent_id": "short", "since": 5}
            )
            assert ack[0]["type"] == "command_response"
            got = [orjson.loads(await client.recv()) for _ in range(11)]
            server.hub.publish({"type": "agent_response", "message": "live"}, channel="short")
            got.append(orjson.loads(await client.recv()))
            return got

    gap, *replay = run(scenario())
    assert gap["type"] == "server_error" and gap["code"] == "history_trimmed"
    assert (gap["first_seq"], gap["last_seq"]) == (41, 50)
    assert [m["seq"] for m in replay] == list(range(41, 52))
    assert replay[-1]["message"] == "live"


def test_client_resumes_the_agent_stream_after_a_reconnect(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory()
    url = f"ws://127.0.0.1:{server.port}"
    conversation = Conversation("demo")
    printed: list[str] = []
    seen_before: list[int] = []

    async def exchange(websocket: websockets.ClientConnection, request: bytes | None) -> None:
        assert request is not None
        await websocket.send(request.decode())
        while True:
            outcome = conversation.receive(orjson.loads(await websocket.recv()))
            if outcome.reply is not None:
                printed.append(outcome.reply)
            if outcome.answers:
                return

    async def scenario() -> None:
        async with websockets.connect(url) as websocket:
            await exchange(websocket, conversation.ask("one"))
        seen_before.append(conversation.last_seq)
        assert seen_before[0] > 3  # a streamed run: its boundaries and deltas take seqs too
        with server.interface.serving("demo"):  # the agent speaks while the client is away
            server.interface.assistant_message("while you were away")
        async with websockets.connect(url) as websocket:
            await exchange(websocket, conversation.resume())
            await exchange(websocket, conversation.ask("two"))

    run(scenario())
    assert "[assistant_message] while you were away" in printed
    assert printed.count("[assistant_message] You said: one") == 1
    assert conversation.last_seq is not None and conversation.last_seq > seen_before[0] + 1
