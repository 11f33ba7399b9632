"""End to end over real sockets on 127.0.0.1, with picows and websockets clients."""

from __future__ import annotations

import threading
from collections.abc import Callable

import orjson
import pytest
import websockets
from picows import WSMsgType

from agentcast import Broadcaster
from clients import picows_clients, run, wait_for, websockets_clients

THREADS = 4
PER_THREAD = 2_000
TOTAL = THREADS * PER_THREAD


@pytest.mark.parametrize("release_gil", [False, True])
def test_concurrent_publishers_reach_every_client_in_thread_order(
    hub_factory: Callable[..., Broadcaster], release_gil: bool
) -> None:
    hub = hub_factory(release_gil=release_gil)
    url = f"ws://127.0.0.1:{hub.port}/"

    def publisher(thread: int) -> None:
        for seq in range(PER_THREAD):
            hub.publish({"t": thread, "seq": seq, "pad": "x" * 40})

    async def scenario() -> None:
        async with (
            picows_clients(url, 170) as fast,
            websockets_clients(url, 30, max_queue=None) as slow,
        ):
            await wait_for(lambda: hub.client_count == 200, what="200 clients")
            threads = [threading.Thread(target=publisher, args=(t,)) for t in range(THREADS)]
            for t in threads:
                t.start()
            received_ws = [[orjson.loads(await c.recv()) for _ in range(TOTAL)] for c in slow]
            for t in threads:
                t.join()
            await wait_for(lambda: all(len(c.messages) == TOTAL for c in fast), 30, "all messages")
            streams = [[orjson.loads(m) for m in c.messages] for c in fast] + received_ws
        for stream in streams:
            assert len(stream) == TOTAL
            for thread in range(THREADS):
                assert [m["seq"] for m in stream if m["t"] == thread] == list(range(PER_THREAD))

    run(scenario())
    assert hub.stats()["deliveries"] == 200 * THREADS * PER_THREAD


@pytest.mark.parametrize("clients", [1, 10, 500])
def test_default_hook_runs_once_per_message(
    hub_factory: Callable[..., Broadcaster], clients: int
) -> None:
    calls: list[object] = []

    class Thought:
        def __init__(self, text: str) -> None:
            self.text = text

    def default(obj: object) -> object:
        calls.append(obj)
        assert isinstance(obj, Thought)
        return {"thought": obj.text}

    hub = hub_factory(default=default)

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", clients) as listeners:
            await wait_for(lambda: hub.client_count == clients)
            for i in range(20):
                hub.publish({"i": i, "obj": Thought(f"t{i}")})
            await wait_for(lambda: all(len(c.messages) == 20 for c in listeners))
            assert orjson.loads(listeners[-1].messages[-1]) == {"i": 19, "obj": {"thought": "t19"}}

    run(scenario())
    assert len(calls) == 20


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 1 << 20])
def test_frame_lengths_arrive_intact_at_websockets(hub: Broadcaster, size: int) -> None:
    payload = b'"' + b"a" * max(size - 2, 0) + b'"' if size >= 2 else b"1" * size

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 1) as (client,):
            await wait_for(lambda: hub.client_count == 1)
            hub.publish_json(payload)
            hub.publish_json(b'"next"')
            assert (await client.recv()).encode() == payload
            assert await client.recv() == '"next"'

    run(scenario())


def test_channels_and_direct_messages_route_over_sockets(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    ids: dict[bytes, int] = {}
    hub = hub_factory(on_message=lambda cid, name: ids.__setitem__(name, cid))

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 3) as (a, b, idle):
            for client, name in ((a, b"a"), (b, b"b"), (idle, b"idle")):
                client.transport.send(WSMsgType.TEXT, name)
            await wait_for(lambda: len(ids) == 3, what="three hellos")
            hub.subscribe(ids[b"a"], "agent-a")
            hub.subscribe(ids[b"b"], "agent-b")
            hub.publish({"to": "a"}, channel="agent-a")
            hub.publish({"to": "b"}, channel="agent-b")
            hub.send(ids[b"idle"], {"to": "idle"})
            hub.publish({"to": "all"})
            hub.unsubscribe(ids[b"a"], "agent-a")
            hub.publish({"to": "a-again"}, channel="agent-a")
            hub.publish({"to": "end"})
            await wait_for(
                lambda: all(c.messages and c.messages[-1] == b'{"to":"end"}' for c in (a, b, idle))
            )
            assert a.messages == [b'{"to":"a","seq":1}', b'{"to":"all"}', b'{"to":"end"}']
            assert b.messages == [b'{"to":"b","seq":1}', b'{"to":"all"}', b'{"to":"end"}']
            assert idle.messages == [b'{"to":"idle"}', b'{"to":"all"}', b'{"to":"end"}']

    run(scenario())


def test_on_message_receives_client_text(hub_factory: Callable[..., Broadcaster]) -> None:
    got: list[tuple[int, bytes]] = []
    hub = hub_factory(on_message=lambda cid, data: got.append((cid, data)))

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 1) as (client,):
            await client.send('{"type":"user_message"}')
            await client.send(["frag", "mented"])
            await wait_for(lambda: len(got) == 2)
            (cid,) = hub._thread.call(hub._core.client_ids)
            assert got == [(cid, b'{"type":"user_message"}'), (cid, b"fragmented")]

    run(scenario())


def test_on_connect_can_subscribe_each_new_client(hub_factory: Callable[..., Broadcaster]) -> None:
    connected: list[int] = []
    box: list[Broadcaster] = []

    def on_connect(client_id: int) -> None:
        connected.append(client_id)
        box[0].subscribe(client_id, f"agent-{len(connected) % 2}")
        if len(connected) == 3:
            raise RuntimeError("a buggy hook: logged, the client stays")

    hub = hub_factory(on_connect=on_connect)
    box.append(hub)

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 4) as clients:
            await wait_for(lambda: len(connected) == 4)
            assert sorted(connected) == sorted(hub._thread.call(hub._core.client_ids))
            hub.publish({"to": 0}, "agent-0")
            hub.publish({"to": 1}, "agent-1")
            await wait_for(lambda: all(len(c.messages) == 1 for c in clients))
            assert sorted(orjson.loads(c.messages[0])["to"] for c in clients) == [0, 0, 1, 1]

    run(scenario())


def test_failing_handler_keeps_connection(hub_factory: Callable[..., Broadcaster]) -> None:
    def handler(cid: int, data: bytes) -> None:
        raise RuntimeError("handler bug")

    hub = hub_factory(on_message=handler)

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 1) as (client,):
            await client.send("boom")
            hub.publish({"still": "here"})
            assert await client.recv() == '{"still":"here"}'

    run(scenario())


async def closed_while_others_served(
    hub: Broadcaster, bad: websockets.ClientConnection, good: websockets.ClientConnection, code: int
) -> None:
    """``bad`` is closed with ``code``; ``good``, on the same server, still gets a broadcast."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await bad.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    hub.publish({"ok": 1})
    assert await good.recv() == '{"ok":1}'


def test_binary_without_handler_is_closed_1003(hub: Broadcaster) -> None:
    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 2) as (bad, good):
            await bad.send(b"\x00\x01")
            await closed_while_others_served(hub, bad, good, 1003)

    run(scenario())


@pytest.mark.parametrize("fragmented", [False, True])
def test_oversize_message_is_closed_1009(
    hub_factory: Callable[..., Broadcaster], fragmented: bool
) -> None:
    hub = hub_factory(max_message_size=1000, on_message=lambda cid, data: None)

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/", 2) as (bad, good):
            await bad.send(["x" * 600, "y" * 600] if fragmented else "x" * 1001)
            await closed_while_others_served(hub, bad, good, 1009)

    run(scenario())
