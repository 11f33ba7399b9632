"""Redis as the backplane: nodes share channels, numbered once, resumable anywhere."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from agentcast import Broadcaster, protocol
from clients import picows_clients, run, wait_for
from redis_server import RedisServer


def subscriber(hub_box: list[Broadcaster]) -> Callable[[int, bytes], None]:
    """An ``on_message`` that takes ``{"type": "subscribe", ...}`` from clients."""

    def on_message(client_id: int, data: bytes) -> None:
        message = protocol.parse_client_message(data)
        assert isinstance(message, protocol.Subscribe)
        hub_box[0].subscribe(client_id, message.agent_id, message.since)

    return on_message


def node(hub_factory: Callable[..., Broadcaster], url: str) -> Broadcaster:
    box: list[Broadcaster] = []
    hub = hub_factory(backplane=url, on_message=subscriber(box))
    box.append(hub)
    return hub


def test_two_nodes_share_a_channel_numbered_once(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    nodes = [node(hub_factory, redis_server.url) for _ in range(2)]

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{nodes[0].port}/", 3) as first, \
                picows_clients(f"ws://127.0.0.1:{nodes[1].port}/", 3) as second:  # fmt: skip
            clients = first + second
            for i in range(100):
                nodes[i % 2].publish({"i": i}, "a1")
            for client in clients:  # while the publishes are on their way: since=0 gets all
                assert client.transport is not None
                client.transport.send(1, b'{"type": "subscribe", "agent_id": "a1", "since": 0}')
            await wait_for(lambda: all(len(c.messages) == 100 for c in clients), what="all 100")
            for client in clients:
                received = [orjson.loads(m) for m in client.messages]
                assert [m["seq"] for m in received] == list(range(1, 101))
                evens = [m["i"] for m in received if m["i"] % 2 == 0]
                assert evens == sorted(evens)  # each node's publishes in its order

    run(scenario())
