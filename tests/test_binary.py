"""Binary frames (opcode 0x2): on the same ordered path as JSON, without seq or history."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import orjson
import pytest
import uvloop
import websockets

from agentcast import Broadcaster
from agentcast._ext import FanoutCore, MemorySink
from clients import parse_frames, run, wait_for, websockets_clients
from redis_server import RedisServer

SMALL = b"\x00\xffaudio"  # 7-bit length, not UTF-8
MEDIUM = bytes(range(256)) * 2  # 16-bit length
LARGE = bytes(range(251)) * 400  # 64-bit length (100,400 bytes)


async def recv(connection: websockets.ClientConnection) -> str | bytes:
    """The next message, or a failure after 10 s (a lost frame must not hang the test)."""
    return await asyncio.wait_for(connection.recv(), 10)


def connected_ids(hub_factory: Callable[..., Broadcaster]) -> tuple[Broadcaster, list[int]]:
    ids: list[int] = []
    return hub_factory(on_connect=ids.append), ids


def test_binary_and_json_reach_a_websockets_client_in_publish_order(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub, ids = connected_ids(hub_factory)

    async def exchange(
        listener: websockets.ClientConnection, other: websockets.ClientConnection, cid: int
    ) -> None:
        hub.subscribe(cid, "voice")
        hub.publish({"i": 0}, "voice")
        hub.publish_binary(SMALL, "voice")
        hub.publish({"i": 1}, "voice")
        hub.publish_binary(MEDIUM)  # everyone
        hub.send_binary(cid, LARGE)
        hub.send(cid, {"i": "direct"})
        hub.publish_binary(SMALL, "elsewhere")  # not subscribed: never arrives
        hub.publish({"i": 2}, "voice")
        got = [await recv(listener) for _ in range(7)]
        assert got == [
            '{"i":0,"seq":1}',
            SMALL,
            '{"i":1,"seq":2}',
            MEDIUM,
            LARGE,
            '{"i":"direct"}',
            '{"i":2,"seq":3}',  # the binary frames took no seq
        ]
        assert await recv(other) == MEDIUM  # broadcasts reach every client

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{hub.port}/"
        async with websockets_clients(url, 1) as (listener,):
            await wait_for(lambda: len(ids) == 1, what="the listener")
            async with websockets_clients(url, 1) as (other,):
                await wait_for(lambda: len(ids) == 2, what="the other client")
                await exchange(listener, other, ids[0])

    run(scenario())
    stats = hub.stats()
    assert stats["published"] == 6  # 3 JSON + 3 binary publishes; sends are not publishes
    assert stats["deliveries"] == 8  # 7 frames to the listener, 1 to the other


def test_binary_frames_from_many_threads_keep_each_threads_order(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    threads, per_thread = 4, 500
    hub, ids = connected_ids(hub_factory)

    def publisher(thread: int) -> None:
        for i in range(per_thread):
            if i % 2:
                hub.publish_binary(bytes([thread]) + i.to_bytes(4, "big"))
            else:
                hub.publish({"t": thread, "i": i})

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 1) as (client,):
            await wait_for(lambda: len(ids) == 1, what="the client")
            workers = [threading.Thread(target=publisher, args=(t,)) for t in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            seen: dict[int, list[int]] = {t: [] for t in range(threads)}
            for _ in range(threads * per_thread):
                message = await recv(client)
                if isinstance(message, bytes):
                    seen[message[0]].append(int.from_bytes(message[1:], "big"))
                else:
                    body = orjson.loads(message)
                    seen[body["t"]].append(body["i"])
            assert seen == {t: list(range(per_thread)) for t in range(threads)}

    run(scenario())


@pytest.fixture
def core() -> Iterator[FanoutCore]:
    loop = uvloop.new_event_loop()
    yield FanoutCore(loop, wake=lambda callback: None, history_size=10)
    loop.close()


def test_binary_frames_are_not_kept_in_history(core: FanoutCore) -> None:
    core.publish({"i": 0}, "voice")
    core.publish_binary(SMALL, "voice")
    core.publish({"i": 1}, "voice")
    core.flush()
    info = core.channel_info("voice")
    assert info is not None and (info["last_seq"], info["frames"]) == (2, 2)
    late = MemorySink()
    core.subscribe(core.add_client(late), "voice", since=0)
    core.flush()
    assert late.data is not None
    assert [(op, orjson.loads(p)["seq"]) for op, p in parse_frames(bytes(late.data))] == [
        (0x1, 1),
        (0x1, 2),
    ]


def test_binary_frames_are_framed_with_opcode_2(core: FanoutCore) -> None:
    sink = MemorySink()
    client = core.add_client(sink)
    core.publish_binary(MEDIUM)
    core.send_binary(client, b"")
    core.flush()
    assert sink.data is not None
    assert bytes(sink.data[:4]) == b"\x82\x7e" + len(MEDIUM).to_bytes(2, "big")
    assert parse_frames(bytes(sink.data)) == [(0x2, MEDIUM), (0x2, b"")]
    assert core.stats()["bytes"] == len(sink.data)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda core: core.publish_binary(None), TypeError),
        (lambda core: core.publish_binary("text"), TypeError),
        (lambda core: core.publish_binary(bytearray(b"x")), TypeError),
        (lambda core: core.publish_binary(b"x", ["unhashable"]), TypeError),
        (lambda core: core.send_binary(1, None), TypeError),
    ],
    ids=["none", "str", "bytearray", "unhashable-channel", "send-none"],
)
def test_bad_binary_calls_raise_in_the_caller(
    core: FanoutCore, call: Callable[[FanoutCore], None], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(core)
    assert core.pending == 0


def test_binary_is_refused_with_a_backplane(
    hub_factory: Callable[..., Broadcaster], redis_server: RedisServer
) -> None:
    hub = hub_factory(backplane=redis_server.url, port=None)
    with pytest.raises(NotImplementedError, match="publish_binary is not available"):
        hub.publish_binary(SMALL, "voice")
    with pytest.raises(NotImplementedError, match="send_binary is not available"):
        hub.send_binary(1, SMALL)
    assert hub.stats()["pending"] == 0
