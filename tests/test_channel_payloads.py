"""A channel message is a JSON object the channel numbers: other payloads are refused
at publish time, and nothing of them reaches a subscriber."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from picows import WSMsgType

from agentcast import Broadcaster
from clients import picows_clients, run, wait_for


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"text": "hi", "seq": 7}, ValueError),
        (["a", "list"], TypeError),
        ("a string", TypeError),
        (3, TypeError),
        (None, TypeError),
    ],
)
def test_publish_refuses_what_the_channel_cannot_number(
    hub_factory: Callable[..., Broadcaster], payload: object, error: type[Exception]
) -> None:
    ids: list[int] = []
    hub = hub_factory(on_message=lambda client_id, _: ids.append(client_id))

    async def scenario() -> None:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 1) as (client,):
            client.transport.send(WSMsgType.TEXT, b"hello")
            await wait_for(lambda: bool(ids), what="the hello")
            hub.subscribe(ids[0], "c")
            with pytest.raises(error, match="seq"):
                hub.publish(payload, channel="c")
            hub.publish({"text": "after"}, channel="c")
            hub.publish(payload)  # a broadcast carries no seq: anything JSON goes
            await wait_for(lambda: len(client.messages) == 2, what="two messages")
            assert client.messages[0] == b'{"text":"after","seq":1}'

    run(scenario())


@pytest.mark.parametrize("payload", [b"[1,2]", b'"text"', b' {"a":1}', b"7", b""])
def test_publish_json_refuses_what_is_not_an_object(hub: Broadcaster, payload: bytes) -> None:
    with pytest.raises(TypeError, match="JSON object"):
        hub.publish_json(payload, channel="c")
    hub.publish_json(b'{"a":1}', channel="c")  # an object is queued
