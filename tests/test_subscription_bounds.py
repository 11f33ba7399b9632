"""Subscriptions per client are capped (``max_subscriptions``), and solo groups stay exact.

A client holding more than a few channels gets a subscriber group of its own whose
channel set changes in place (one subscribe costs the same at 20 or 10,000 channels;
bench/test_subscribe_cost.py measures it); these tests check it against the oracle
across the shared/solo boundary, and the cap from the core up to the command line.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable

import orjson
import pytest
import uvloop
import websockets

from agentcast import Broadcaster, notices
from agentcast._ext import FanoutCore, MemorySink
from agentcast.memgpt import protocol
from agentcast.memgpt.app import AgentServer
from clients import DEMO_STEP, drain, memgpt_exchange, parse_frames, run, user_message, wait_for
from reference import ReferenceFanout, frame
from serve_cli import serving


class CappedReference(ReferenceFanout):
    """The oracle with a cap: a subscribe beyond it leaves the client as it was, with a
    ``too_many_subscriptions`` notice in its stream."""

    def __init__(self, client_ids: list[int], cap: int) -> None:
        super().__init__(client_ids)
        self.cap = cap

    def subscribe(self, client_id: int, channel: Hashable) -> None:
        held = self.channels[client_id]
        if channel not in held and len(held) >= self.cap:
            self.streams[client_id] += frame(notices.too_many_subscriptions(channel, self.cap))
            return
        super().subscribe(client_id, channel)

    def resume(self, client_id: int, channel: Hashable, since: int) -> list[int]:
        held = self.channels[client_id]
        if channel not in held and len(held) >= self.cap:
            self.subscribe(client_id, channel)  # refused: the notice, no replay
            return []
        return super().resume(client_id, channel, since)


@pytest.mark.parametrize("seed", range(8))
def test_many_channels_per_client_match_the_oracle(loop: uvloop.Loop, seed: int) -> None:
    """Clients cross the shared/solo boundary both ways (up to 30 of 50 channels, the cap)
    while messages flow, mid-tick too; every byte stream equals the oracle's."""
    rng = random.Random(seed)
    cap = 30
    core = FanoutCore(
        loop,
        wake=lambda _: None,
        max_batch_bytes=rng.choice([64, 4096]),
        max_subscriptions=cap,
        history_bytes=1 << 30,
    )
    sinks = {}
    for _ in range(6):
        sink = MemorySink()
        sinks[core.add_client(sink)] = sink
    ids = list(sinks)
    oracle = CappedReference(ids, cap)
    channels: list[Hashable] = [f"agent-{i}" for i in range(50)]
    subscribe_bias = 0.6
    for step in range(4000):
        if step % 1000 == 0:
            subscribe_bias = 0.9 if subscribe_bias < 0.5 else 0.2  # grow, then shrink
        roll = rng.random()
        payload = orjson.dumps({"step": step})
        cid, channel = rng.choice(ids), rng.choice(channels)
        if roll < 0.3:
            target = rng.choice([*channels, None])
            core.publish_json(payload, target)
            oracle.publish(payload, target)
        elif roll < 0.35:
            core.send_json(cid, payload)
            oracle.send(cid, payload)
        elif roll < 0.85:
            if rng.random() < subscribe_bias:
                core.subscribe(cid, channel)
                oracle.subscribe(cid, channel)
            else:
                core.unsubscribe(cid, channel)
                oracle.unsubscribe(cid, channel)
        elif roll < 0.9:
            since = rng.randrange(0, oracle.last_seq.get(channel, 0) + 2)
            core.subscribe(cid, channel, since=since)
            oracle.resume(cid, channel, since)
        else:
            core.tick()
    drain(core)
    assert core.stats()["refused_subscriptions"] > 0  # the cap was reached
    for cid, sink in sinks.items():
        assert bytes(sink.data) == bytes(oracle.streams[cid]), f"client {cid}"


def test_a_subscribe_beyond_the_cap_is_refused_counted_and_told(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=lambda _: None, max_subscriptions=2)
    sink = MemorySink()
    client = core.add_client(sink)
    for channel in ("a", "b", "c"):
        core.subscribe(client, channel, ack=b'{"ok":"%s"}' % channel.encode())
    drain(core)
    replies = [orjson.loads(payload) for _, payload in parse_frames(bytes(sink.data))]
    assert replies == [
        {"ok": "a"},
        {"ok": "b"},
        {
            "type": "server_error",
            "code": "too_many_subscriptions",
            "agent_id": "c",
            "channel": "c",
            "limit": 2,
            "message": "not subscribed: at most 2 subscriptions per connection; "
            "unsubscribe from another channel first",
        },
    ]
    assert core.stats()["refused_subscriptions"] == 1
    sink.data.clear()
    core.publish_json(b'{"to":"c"}', "c")
    core.unsubscribe(client, "a")
    core.subscribe(client, "c", ack=b'{"ok":"c"}')  # room again
    core.publish_json(b'{"to":"c"}', "c")
    drain(core)
    assert [payload for _, payload in parse_frames(bytes(sink.data))] == [
        b'{"ok":"c"}',
        b'{"to":"c","seq":2}',
    ]


def test_max_subscriptions_must_be_positive(loop: uvloop.Loop) -> None:
    with pytest.raises(ValueError, match="max_subscriptions"):
        FanoutCore(loop, max_subscriptions=0)


async def _subscribe_all(url: str, agents: list[str]) -> list[dict]:
    async with websockets.connect(url) as ws:
        for agent in agents:
            await ws.send(protocol.subscribe(agent).decode())
        replies = [orjson.loads(await ws.recv()) for _ in agents]
        # The connection stays usable: make room, and the refused agent is subscribed.
        await ws.send(protocol.unsubscribe(agents[0]).decode())
        await ws.send(protocol.subscribe(agents[-1]).decode())
        replies += [orjson.loads(await ws.recv()) for _ in range(2)]
        return replies


def test_agent_server_answers_the_subscribe_beyond_128_with_an_error_frame() -> None:
    """The default cap (128): 129 subscribes get 128 acks, then too_many_subscriptions."""
    server = AgentServer(port=0, max_message_rate=0).start()
    try:
        url = f"ws://127.0.0.1:{server.port}/"
        agents = [f"agent-{i}" for i in range(129)]
        replies = run(_subscribe_all(url, agents))

        async def control() -> list[dict]:
            async with websockets.connect(url) as ws:
                return await memgpt_exchange(ws, user_message("still there?", "c"))

        assert [r["type"] for r in run(control())] == DEMO_STEP
    finally:
        server.stop()
    assert replies[:128] == [
        {"type": "command_response", "status": f"OK: subscribed to {agent}"}
        for agent in agents[:128]
    ]
    assert replies[128]["code"] == "too_many_subscriptions"
    assert replies[128]["agent_id"] == "agent-128"
    assert replies[128]["limit"] == 128
    assert [r.get("status") for r in replies[129:]] == [
        "OK: unsubscribed from agent-0",
        "OK: subscribed to agent-128",
    ]


def test_broadcaster_subscribe_beyond_the_cap_changes_nothing(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    """The embedding API: the subscribe is refused on the loop thread and the client told."""
    hub = hub_factory(max_subscriptions=1)

    async def scenario() -> list[dict]:
        async with websockets.connect(f"ws://127.0.0.1:{hub.port}/") as ws:
            await wait_for(lambda: hub.client_count == 1)
            (client,) = hub._thread.call(hub._core.client_ids)
            hub.subscribe(client, "one")
            hub.subscribe(client, "two")
            hub.publish({"n": 1}, channel="two")
            hub.publish({"n": 2}, channel="one")
            return [orjson.loads(await ws.recv()) for _ in range(2)]

    notice, message = run(scenario())
    assert notice["code"] == "too_many_subscriptions" and notice["agent_id"] == "two"
    assert message == {"n": 2, "seq": 1}
    assert hub.stats()["refused_subscriptions"] == 1


def test_serve_max_subscriptions_option() -> None:
    with serving("--max-subscriptions=2") as (_, port):
        replies = run(_subscribe_all(f"ws://127.0.0.1:{port}/", ["x", "y", "z"]))
    assert [r.get("code") for r in replies[:3]] == [None, None, "too_many_subscriptions"]
    assert replies[-1]["status"] == "OK: subscribed to z"
