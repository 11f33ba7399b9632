"""The backplane's keys have a lifecycle: they expire, a new epoch starts a new log, a
replica's refusal is waited out, and a node leaving an idle channel loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
import websockets

from agentcast import AgentServer, Broadcaster, Publisher
from agentcast._ext import MemorySink
from agentcast.backplane import script
from clients import DEMO_STEP, frames_of, memgpt_exchange, run, subscribed, user_message, wait_for
from redis_server import RedisServer, ask_redis

CHANNEL_TTL = 30.0  # the nodes' channel_ttl in these tests (seconds)


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client of the test's Redis, to look at its keys."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def acked(hub: Broadcaster, count: int) -> None:
    """Wait until Redis has applied the node's first ``count`` publishes."""
    run(wait_for(lambda: hub.stats()["backplane_acked"] >= count, what=lambda: str(hub.stats())))


def ttls(broker: redis.Redis) -> dict[bytes, int]:
    """Every agentcast key with its PTTL (ms; -1: it never expires)."""
    return {key: broker.pttl(key) for key in broker.keys("agentcast:*")}


def test_every_key_of_a_stream_expires_and_each_publish_refreshes_it(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster], broker: redis.Redis
) -> None:
    """Meta, log and publisher marker, of a channel and of the broadcasts: each has a
    TTL tied to ``channel_ttl``, and a later publish sets it back; the log stays within
    ``history_size`` (plus the one stream node ``MAXLEN ~`` may leave)."""
    hub = hub_factory(backplane=redis_server.url, port=None, channel_ttl=CHANNEL_TTL,
                      history_size=50)  # fmt: skip
    subscribed(hub, hub.attach(MemorySink()), "a")
    for n in range(300):
        hub.publish({"n": n}, "a")
        hub.publish({"b": n})
    acked(hub, 600)
    keys = ttls(broker)
    kinds = sorted(key.split(b":")[2] for key in keys)
    assert kinds == [b"log", b"log", b"meta", b"meta", b"pub", b"pub"], keys
    assert all(ttl > 0 for ttl in keys.values()), keys
    assert all(ttl <= script.key_ttl_ms(CHANNEL_TTL) for ttl in keys.values()), keys
    for channel in ("a", None):
        assert 50 <= broker.xlen(script.log_key(channel)) <= 50 + 100

    for key in keys:  # as if most of the TTL had passed
        broker.pexpire(key, 5000)
    hub.publish({"n": 300}, "a")
    hub.publish({"b": 300})
    acked(hub, 602)
    assert all(ttl > 5000 for ttl in ttls(broker).values()), ttls(broker)


def test_redis_forgets_an_idle_channel_but_not_one_a_node_follows(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster], broker: redis.Redis
) -> None:
    """With a short ``channel_ttl`` the keys of a channel nobody follows go; those of a
    channel a node's client follows, and the broadcasts, published at the same moment,
    are kept alive by the node."""
    hub = hub_factory(backplane=redis_server.url, port=None, channel_ttl=0.5)
    subscribed(hub, hub.attach(MemorySink()), "followed")
    hub.publish({"n": 0}, "followed")
    hub.publish({"b": 0})
    hub.publish({"n": 0}, "idle")
    acked(hub, 3)
    run(wait_for(lambda: not broker.exists(script.meta_key("idle"), script.log_key("idle")),
                 what="the idle channel's keys to expire"))  # fmt: skip
    for channel in ("followed", None):
        for key in (script.meta_key(channel), script.log_key(channel)):
            assert broker.pttl(key) > 0, key


def test_a_lost_meta_starts_a_new_log_and_subscribers_are_told(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster], broker: redis.Redis
) -> None:
    """Publish 3, lose ``:meta`` (evicted, say) while ``:log`` survives, publish 3: the
    new epoch numbers from 1 in a new log, nothing is refused, the subscriber gets a
    channel_restarted notice between the two runs, and a node that syncs later reads
    the new log."""
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()
    subscribed(hub, hub.attach(sink), "c")
    for n in range(3):
        hub.publish({"n": n}, "c")
    run(wait_for(lambda: len(frames_of(sink)) == 3))
    broker.delete(script.meta_key("c"))
    for n in range(3, 7):
        hub.publish({"n": n}, "c")
    run(
        wait_for(lambda: len(frames_of(sink)) == 8, what=lambda: f"{frames_of(sink)} {hub.stats()}")
    )
    assert hub.stats()["backplane_failed"] == 0
    received = [orjson.loads(f) for f in frames_of(sink)]
    assert [(m.get("n"), m.get("seq")) for m in received[:3]] == [(0, 1), (1, 2), (2, 3)]
    notice = received[3]
    assert notice["code"] == "channel_restarted" and notice["first_seq"] == 1, notice
    assert [(m["n"], m["seq"]) for m in received[4:]] == [(3, 1), (4, 2), (5, 3), (6, 4)]

    late = hub_factory(backplane=redis_server.url, port=None)
    resumed = MemorySink()
    late.subscribe(late.attach(resumed), "c", since=0)
    run(wait_for(lambda: len(frames_of(resumed)) == 4))
    assert [orjson.loads(f)["n"] for f in frames_of(resumed)] == [3, 4, 5, 6]


def replica_of(primary: RedisServer, directory: Path) -> RedisServer:
    """A redis-server replicating ``primary``, started once its link is up."""
    directory.mkdir()
    options = ["--replicaof", "127.0.0.1", str(primary.port)]
    replica = RedisServer(directory, persistent=False, options=options).start()

    client = redis.Redis.from_url(replica.url)
    try:
        linked = lambda: client.info("replication")["master_link_status"] == "up"  # noqa: E731
        run(wait_for(linked, what="the replica's link to its primary"))
    except BaseException:
        replica.stop()
        raise
    finally:
        client.close()
    return replica


def wait_out_not_now(
    hub_factory: Callable[..., Broadcaster], url: str, recover: Callable[[], object]
) -> None:
    """A node and a Publisher publish to a Redis that answers "not now": they retry with
    backoff and fail nothing; once ``recover()`` ran every publish lands, each
    publisher's in order, each exactly once."""
    hub = hub_factory(backplane=url, port=None)
    sink = MemorySink()
    subscribed(hub, hub.attach(sink), "a")
    with Publisher(url) as publisher:
        for n in range(5):
            hub.publish({"node": n}, "a")
            publisher.publish({"pub": n}, "a")

        def both_retried() -> bool:
            return (hub.stats()["backplane_publish_retries"] >= 1
                    and publisher.stats()["publish_retries"] >= 1)  # fmt: skip

        run(wait_for(both_retried, what=lambda: f"{hub.stats()} {publisher.stats()}"))
        assert hub.stats()["backplane_failed"] == publisher.stats()["failed"] == 0
        assert frames_of(sink) == []
        recover()
        assert publisher.flush(15)
        run(wait_for(lambda: len(frames_of(sink)) >= 10, 15, lambda: str(frames_of(sink))))
        assert publisher.stats()["failed"] == 0
    assert hub.stats()["backplane_failed"] == 0
    received = [orjson.loads(f) for f in frames_of(sink)]
    assert [m["seq"] for m in received] == list(range(1, 11))
    assert [m["node"] for m in received if "node" in m] == list(range(5))
    assert [m["pub"] for m in received if "pub" in m] == list(range(5))


def test_publishes_to_a_replica_wait_and_land_once_it_is_promoted(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster], tmp_path: Path
) -> None:
    """Pointed at a read-only replica (a failover under way), Redis answers READONLY
    until the replica is promoted."""
    replica = replica_of(redis_server, tmp_path / "replica")
    try:
        promote = lambda: run(ask_redis(replica.url, "REPLICAOF", "NO", "ONE"))  # noqa: E731
        wait_out_not_now(hub_factory, replica.url, promote)
    finally:
        replica.stop()


def test_publishes_to_a_full_redis_wait_and_land_once_it_has_room(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster], broker: redis.Redis
) -> None:
    """At ``maxmemory`` with ``noeviction`` Redis answers OOM until memory frees (here:
    the limit is lifted)."""
    broker.config_set("maxmemory-policy", "noeviction")
    broker.config_set("maxmemory", 1)
    wait_out_not_now(hub_factory, redis_server.url, lambda: broker.config_set("maxmemory", 0))


def test_leaving_an_idle_channel_and_following_it_again_is_no_gap(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """The node stops following a channel its last client left and follows it again for
    a later resume: nothing was lost, so no seq gap is counted, and the resume gets
    every message, also those published while no one here followed it."""
    hub = hub_factory(backplane=redis_server.url, port=None)
    first = MemorySink()
    client = hub.attach(first)
    subscribed(hub, client, "churn")
    hub.publish({"n": 0}, "churn")
    run(wait_for(lambda: len(frames_of(first)) == 1))
    hub.unsubscribe(client, "churn")
    run(wait_for(lambda: hub.stats()["backplane_channels"] == 0, 10, "the node to leave"))
    hub.publish({"n": 1}, "churn")
    acked(hub, 2)
    second = MemorySink()
    hub.subscribe(hub.attach(second), "churn", since=0)
    run(wait_for(lambda: len(frames_of(second)) == 2, what=lambda: str(frames_of(second))))
    assert [orjson.loads(f) for f in frames_of(second)] == [
        {"n": 0, "seq": 1},
        {"n": 1, "seq": 2},
    ]
    assert hub.stats()["gaps"] == 0


def test_a_steps_end_follows_its_messages_when_redis_lost_the_channel(
    redis_server: RedisServer, broker: redis.Redis
) -> None:
    """Redis lost the agent's keys between two steps (a flush, an eviction): the second
    step's messages are numbered 1.. in a new epoch while the node still holds 1..3 of the
    old one. The end marker waits for those messages, not for an old seq as high."""
    with AgentServer(port=0, backplane=redis_server.url) as server:

        async def scenario() -> list[str]:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                first = await memgpt_exchange(ws, user_message("one", "demo"))
                assert [r["type"] for r in first] == DEMO_STEP
                broker.delete(script.meta_key("demo"), script.log_key("demo"))
                await ws.send(orjson.dumps(user_message("two", "demo")).decode())
                seen: list[str] = []
                while "agent_response_end" not in seen:
                    reply = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                    seen.append(reply.get("code") or reply["type"])
                return seen

        seen = run(scenario())
    assert seen.index("agent_response_end") > seen.index("agent_response"), seen
