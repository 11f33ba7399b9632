"""The backplane under faults: a dropped pub/sub connection, garbage in Redis, a failing script."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from agentcast import AgentServer, Broadcaster, Publisher
from agentcast._ext import MemorySink
from agentcast.backplane import script
from clients import (
    DEMO_STEP,
    frames_of,
    memgpt_exchange,
    run,
    subscribed,
    user_message,
    wait_for,
    websockets_clients,
)
from redis_server import RedisServer, ask_redis


async def wait_for_refused_subscribes(url: str, count: int) -> None:
    """Wait until Redis has refused ``count`` SUBSCRIBEs (its ACL log counts them)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        log = await ask_redis(url, "ACL", "LOG")
        if sum(e[b"count"] for e in log if e[b"reason"] == b"channel") >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, "SUBSCRIBEs were not refused"
        await asyncio.sleep(0.01)


async def drop_pubsub(url: str) -> None:
    """Close every pub/sub connection on the broker, as a network blip would."""
    assert await ask_redis(url, "CLIENT", "KILL", "TYPE", "pubsub") >= 1


def test_route_all_keeps_answering_across_pubsub_drops(redis_server: RedisServer) -> None:
    """With ``route="all"`` the agent's messages are broadcasts through Redis, and the
    start and end markers are direct sends that wait for them: a broadcast published
    while the node's pub/sub connection is down must neither vanish nor hold back
    every later send."""
    with AgentServer(port=0, backplane=redis_server.url, route="all") as server:

        async def scenario() -> None:
            async with websockets_clients(f"ws://127.0.0.1:{server.port}/", 2) as clients:
                talker, watcher = clients
                for attempt in range(4):
                    if attempt:
                        await drop_pubsub(redis_server.url)
                    reply = await asyncio.wait_for(
                        memgpt_exchange(talker, user_message(f"hi {attempt}")), 10
                    )
                    assert [r["type"] for r in reply] == DEMO_STEP
                    watched = [orjson.loads(await asyncio.wait_for(watcher.recv(), 10))
                               for _ in range(3)]  # fmt: skip
                    assert watched == reply[1:-1]  # the broadcasts, each once, in order

        run(scenario())


def test_a_batch_sent_twice_is_applied_once(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """redis-py retries a command whose reply was lost, and so does the outbox: the
    script must apply a broadcast, like a channel message, once per publisher index."""
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()
    client = hub.attach(sink)
    subscribed(hub, client, "a")
    batch = [b"publisher-1", 100, script.key_ttl_ms(60)]
    for index, channel, payload in [(1, None, b'{"b":0}'), (2, "a", b'{"n":0}'),
                                    (3, None, b'{"b":1}')]:  # fmt: skip
        batch += [index, script.pubsub_key(channel), payload]

    async def send_twice_then_once_more() -> None:
        for _ in range(2):
            await ask_redis(redis_server.url, "EVAL", script.PUBLISH, 0, *batch)
        await ask_redis(redis_server.url, "EVAL", script.PUBLISH, 0, *batch[:3],
                        4, script.pubsub_key(None), b'{"b":2}')  # fmt: skip
        await wait_for(lambda: b'"b":2' in bytes(sink.data or b""))

    run(send_twice_then_once_more())
    assert frames_of(sink) == [b'{"b":0}', b'{"n":0,"seq":1}', b'{"b":1}', b'{"b":2}']


GARBAGE_PUBLISHES = [
    (script.ALL, b"not an announcement"),
    (script.ALL, b"1700000000000000 x 3:abc"),
    (script.ALL, b"1700000000000000 1 99:too short"),
    (script.pubsub_key("agent0"), b"\xff\xfe"),
    (script.pubsub_key("agent0"), b"1 2"),
    (script.pubsub_key("agent0"), b"1700000000000000 0 2:{}"),
]


def test_garbage_in_redis_is_skipped_counted_and_the_node_keeps_serving(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A stray redis-cli or a version mismatch: malformed announcements on the node's
    pub/sub channels, keys of another type where streams are expected. The node skips
    them, counts them, logs each kind once, serves its clients, and stops with 1001."""
    server = AgentServer(port=0, backplane=redis_server.url).start()
    try:

        async def scenario() -> None:
            async with websockets_clients(f"ws://127.0.0.1:{server.port}/", 1) as (client,):
                reply = await memgpt_exchange(client, user_message("hi", "agent0"))
                assert [r["type"] for r in reply] == DEMO_STEP
                step = server.hub.channel_info("agent0")["last_seq"]  # events of a "hi" step
                await ask_redis(redis_server.url, "SET", script.log_key("w-log"), "x")
                await ask_redis(redis_server.url, "SET", script.meta_key("w-meta"), "x")
                for _ in range(20):  # many of each kind: the log stays bounded
                    for key, data in GARBAGE_PUBLISHES:
                        await ask_redis(redis_server.url, "PUBLISH", key, data)
                # The streams of another type: subscribing (a sync) and publishing go on.
                for agent in ("w-log", "w-meta"):
                    reply = await asyncio.wait_for(
                        memgpt_exchange(client, user_message("hi", agent)), 10
                    )
                    assert [r["type"] for r in reply] == [DEMO_STEP[0], DEMO_STEP[-1]]
                for attempt in range(2):  # and every good channel as before
                    reply = await asyncio.wait_for(
                        memgpt_exchange(client, user_message("again", f"agent{attempt}")), 10
                    )
                    assert [r["type"] for r in reply] == DEMO_STEP
                await wait_for(  # counted as the reader gets to them
                    lambda: (
                        server.hub.stats()["backplane_bad_messages"] >= 20 * len(GARBAGE_PUBLISHES)
                    ),
                    what=lambda: f"bad messages counted: {server.hub.stats()}",
                )
                stats = server.hub.stats()
                assert stats["backplane_failed"] == 2 * step  # each event of each bad agent
                assert stats["backplane_task_restarts"] == 0
                await asyncio.to_thread(server.stop)
                await asyncio.wait_for(client.wait_closed(), 10)
                assert client.close_code == 1001

        run(scenario())
    finally:
        server.stop()
    skipped = [r for r in caplog.records if "skipping a bad" in r.getMessage()]
    assert 1 <= len(skipped) <= 4  # once per kind


def test_a_message_redis_refuses_mid_batch_leaves_the_others_announced(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """One message of a batch whose stream key has another type: Redis refuses that one;
    those before and after it in the same script call are numbered, stored, announced."""
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()
    subscribed(hub, hub.attach(sink), "a")
    run(ask_redis(redis_server.url, "SET", script.log_key("bad"), "not a stream"))
    with Publisher(redis_server.url) as publisher:

        def one_batch() -> None:  # on the publisher's loop: nothing is sent in between
            for n, channel in enumerate(["a", "bad", "a"]):
                publisher.publish({"n": n}, channel)

        assert publisher.loop is not None
        publisher.loop.call_soon_threadsafe(one_batch)
        assert publisher.flush(10)
        assert publisher.stats()["failed"] == 1

    run(wait_for(lambda: len(frames_of(sink)) == 2))
    assert frames_of(sink) == [b'{"n":0,"seq":1}', b'{"n":2,"seq":2}']


def frames_once_there(sink: MemorySink, count: int) -> list[bytes]:
    run(wait_for(lambda: len(frames_of(sink)) >= count))
    return frames_of(sink)


@pytest.mark.parametrize("with_redis", [False, True], ids=["local", "redis"])
def test_the_empty_string_is_a_channel_like_any_other_with_or_without_redis(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster], with_redis: bool
) -> None:
    hub = hub_factory(backplane=redis_server.url if with_redis else None, port=None)
    member, other = MemorySink(), MemorySink()
    subscribed(hub, hub.attach(member), "")
    hub.attach(other)
    hub.publish({"to": "empty"}, "")
    hub.publish({"to": "everyone"})
    assert frames_once_there(other, 1) == [b'{"to":"everyone"}']
    assert frames_once_there(member, 2) == [b'{"to":"empty","seq":1}', b'{"to":"everyone"}']


def test_a_reader_that_redis_refuses_is_started_again(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """Redis refuses the reader's SUBSCRIBE (an ACL without channels: NOPERM, not a
    broker error) for a while: the task fails, is started again, and once allowed
    delivers as before."""
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()
    subscribed(hub, hub.attach(sink), "a")

    async def refuse_then_allow() -> None:
        await ask_redis(redis_server.url, "ACL", "SETUSER", "default", "resetchannels")
        try:  # redis-py's own resubscribe may be one; the reader's first and its next
            await wait_for_refused_subscribes(redis_server.url, 3)
        finally:
            await ask_redis(redis_server.url, "ACL", "SETUSER", "default", "allchannels")

    run(refuse_then_allow())
    hub.publish({"n": 1}, "a")
    assert frames_once_there(sink, 1) == [b'{"n":1,"seq":1}']
    assert hub.stats()["backplane_task_restarts"] >= 1


def test_a_refused_publish_does_not_hold_back_the_sends_after_it(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """A broadcast in a batch with a message Redis refuses, then a direct send that must
    wait for it: the broadcast arrives, and so does the send."""
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()
    client = hub.attach(sink)
    run(ask_redis(redis_server.url, "SET", script.log_key("bad"), "not a stream"))

    def one_batch() -> None:  # on the loop: one script call, the send queued after it
        hub.publish({"n": 0}, "bad")
        hub.publish({"b": 0})
        hub.send(client, {"direct": 0})

    assert hub.loop is not None
    hub.loop.call_soon_threadsafe(one_batch)
    assert frames_once_there(sink, 2) == [b'{"b":0}', b'{"direct":0}']
    assert hub.stats()["backplane_failed"] == 1


def test_a_broadcast_right_after_start_arrives_and_holds_nothing_back(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """Published before the node's pub/sub connection has subscribed: caught up from
    the broadcasts' stream."""
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()

    def at_once() -> None:  # on the loop, before the reader has had a turn
        client = hub.attach(sink)
        hub.publish({"b": 0})
        hub.send(client, {"direct": 0})

    assert hub.loop is not None
    hub.loop.call_soon_threadsafe(at_once)
    assert frames_once_there(sink, 2) == [b'{"b":0}', b'{"direct":0}']
