"""Redis as the backplane: nodes share channels, numbered once, resumable anywhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from agentcast import AgentServer, AsyncPublisher, AsyncWebSocketInterface, Broadcaster, Publisher
from agentcast._ext import MemorySink
from agentcast.backplane import script
from agentcast.memgpt import protocol
from backplane_nodes import Follower, Process
from clients import (
    DEMO_STEP,
    frames_of,
    memgpt_exchange,
    picows_clients,
    run,
    subscribed,
    user_message,
    wait_for,
    websockets_clients,
)
from redis_server import RedisServer, ask_redis, free_port


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


def test_the_memgpt_exchange_keeps_its_order_through_redis(redis_server: RedisServer) -> None:
    """The step's messages go round Redis; start and end markers stay local: the end
    marker must still come after them, every time."""
    with AgentServer(port=0, backplane=redis_server.url) as server:

        async def scenario() -> None:
            async with websockets_clients(f"ws://127.0.0.1:{server.port}/", 4) as clients:
                for attempt in range(10):
                    replies = await asyncio.gather(
                        *(memgpt_exchange(c, user_message(f"hi {attempt}", f"agent{i}"))
                          for i, c in enumerate(clients))
                    )  # fmt: skip
                    for reply in replies:
                        assert [r["type"] for r in reply] == DEMO_STEP

        run(scenario())


def test_bad_uses_fail_clearly(hub_factory: Callable[..., Broadcaster]) -> None:
    port = free_port()  # no Redis there
    with pytest.raises(ConnectionError, match="cannot reach Redis"):
        Broadcaster(port=0, backplane=f"redis://127.0.0.1:{port}/0").start()
    with pytest.raises(ConnectionError, match="cannot reach Redis"):
        Publisher(f"redis://127.0.0.1:{port}/0").start()


def test_channels_must_be_strings_with_a_backplane(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    hub = hub_factory(backplane=redis_server.url)
    with pytest.raises(TypeError, match="channels are strings"):
        hub.publish({"a": 1}, 42)
    with Publisher(redis_server.url) as publisher:
        with pytest.raises(TypeError, match="channels are strings"):
            publisher.publish({"a": 1}, ("tuple",))
        publisher.publish({"a": 1}, "fine")
        assert publisher.flush(5)
        assert publisher.stats()["acked"] == 1


def test_announcements_split_back_into_their_payloads() -> None:
    payloads = [b'{"a":"x y: 12:3"}', b"", b"9:" * 40, "\u00e9t\u00e9".encode()]
    body = b"".join(b"%d:%s" % (len(p), p) for p in payloads)
    assert script.split_announcement(b"1795 42 " + body) == (b"1795", 42, payloads)


def test_a_publishers_channel_messages_and_broadcasts_keep_its_order(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()
    subscribed(hub, hub.attach(sink), "a")
    with Publisher(redis_server.url) as publisher:
        for i in range(300):
            publisher.publish({"i": i}, "a" if i % 3 else None)
        assert publisher.flush(10)

    async def delivered() -> None:
        await wait_for(lambda: sink.data is not None and sink.data.count(b'"i"') == 300)

    run(delivered())
    assert [orjson.loads(f)["i"] for f in frames_of(sink)] == list(range(300))


def test_publishes_wait_bounded_while_redis_is_away_then_land(redis_server: RedisServer) -> None:
    with Publisher(redis_server.url, max_pending=10) as publisher:
        redis_server.stop()
        for i in range(100):
            publisher.publish({"i": i}, "a")  # never blocks, never raises
        # Held: 10 queued, plus at most the 10 of a batch already out and being retried.
        assert publisher.stats()["dropped"] >= 80
        assert not publisher.flush(0.5)
        redis_server.start()
        assert publisher.flush(15)
        assert publisher.stats()["failed"] == 0
        kept = 100 - publisher.stats()["dropped"]
    entries = run(ask_redis(redis_server.url, "XRANGE", script.log_key("a"), "-", "+"))
    stored = [orjson.loads(fields[b"d"])["i"] for _, fields in entries]
    # Each kept publish stored once, in order. Which ones were dropped depends on when the
    # outbox took its batch out of the full queue (0-9 out, 10 dropped, 11-20 kept is
    # right), but the first ten found the queue empty.
    assert len(stored) == kept and stored == sorted(set(stored)), stored
    assert stored[:10] == list(range(10)), stored


def test_async_publisher_with_the_memgpt_interface_reaches_a_node(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    hub = hub_factory(backplane=redis_server.url, port=None)
    sink = MemorySink()
    subscribed(hub, hub.attach(sink), "agent-7")

    async def agent_fleet() -> None:
        async with AsyncPublisher(redis_server.url) as publisher:
            interface = AsyncWebSocketInterface(publisher, route="agent")
            with interface.serving("agent-7"):
                await interface.internal_monologue("thinking")
                await interface.assistant_message("hello")
            assert await publisher.flush(5)
        await wait_for(lambda: len(frames_of(sink)) == 2)

    run(agent_fleet())
    received = [orjson.loads(f) for f in frames_of(sink)]
    assert [(m["message_type"], m["message"], m["seq"]) for m in received] == [
        ("internal_monologue", "thinking", 1),
        ("assistant_message", "hello", 2),
    ]
    assert {m["agent_id"] for m in received} == {"agent-7"}


def test_a_node_leaves_a_channel_its_last_client_left(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    hub = hub_factory(backplane=redis_server.url, port=None)
    client = hub.attach(MemorySink())
    hub.subscribe(client, "passing")

    async def channels_then_none() -> None:
        await wait_for(lambda: hub.stats()["backplane_channels"] == 1)
        hub.detach(client)
        await wait_for(lambda: hub.stats()["backplane_channels"] == 0, 10)

    run(channels_then_none())
    assert run(ask_redis(redis_server.url, "PUBSUB", "CHANNELS")) == [b"agentcast:all"]


CHANNELS = 20
EVERY = 50  # a broadcast after every 50th channel message of a publisher


def drop_pubsub_once_numbered(url: str, channel: str, seq: int) -> int:
    """Once Redis has numbered ``seq`` messages of ``channel``, close every pub/sub
    connection (as a network blip would); returns how many."""
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 30
        while int(client.hget(script.meta_key(channel), "seq") or 0) < seq:
            assert time.monotonic() < deadline, f"{channel} never reached seq {seq}"
            time.sleep(0.001)
        return int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
    finally:
        client.close()


def expected_ns(channel: str, count: int, channels: int) -> list[int]:
    """The ``n`` values one publisher sends to ``channel`` when it publishes ``count``."""
    index = int(channel[1:])
    return [k for k in range(count) if k % channels == index]


def progress(followers: list[Follower]) -> str:
    counts = sorted(len(f.messages) for f in followers)
    broadcasts = sorted(len(f.broadcasts) for f in followers)
    notices = sum(len(f.notices) for f in followers)
    return (f"every follower's messages (now {counts[0]}..{counts[-1]}, broadcasts "
            f"{broadcasts[0]}..{broadcasts[-1]}, {notices} notices)")  # fmt: skip


def assert_lost_only_where_told(stream: list[dict[str, Any]], key: str, expected: list[int]):
    """``stream`` (values under ``key``, and notices) holds ``expected`` exactly once and
    in order, except where a notice stands: the run before the first notice is the start
    of ``expected``, each run after one a contiguous stretch of it (the numbering may
    have started over there), the last ending with the last value."""
    runs: list[list[int]] = [[]]
    for message in stream:
        if "code" in message:
            runs.append([])
        else:
            runs[-1].append(message[key])
    assert runs[0] == expected[: len(runs[0])], "lost or doubled before any notice"
    resumed_at = len(runs[0])  # where in ``expected`` the next run may start, at the earliest
    for run_ in runs[1:]:
        if run_:
            start = expected.index(run_[0])
            assert start >= resumed_at, f"{run_[0]} doubled across a notice"
            assert run_ == expected[start : start + len(run_)], "lost or doubled, untold"
            resumed_at = start + len(run_)
    assert [v for r in runs for v in r][-1:] == expected[-1:]


@pytest.mark.parametrize(
    ("values", "passes"),
    [
        ([1, 2, None, 4, 5], True),  # 3 lost where the notice stands
        ([1, 2, None, 2, 3, 4, 5], False),  # 2 doubled across the notice
        ([1, 2, None, 4, None, 3, 5], False),  # 3 after 4: reordered across notices
        ([1, 3, 4, 5], False),  # 2 lost, untold
    ],
)
def test_the_stream_check_refuses_what_a_notice_does_not_excuse(
    values: list[int | None], passes: bool
) -> None:
    stream = [{"code": "gap"} if v is None else {"n": v} for v in values]
    if passes:
        assert_lost_only_where_told(stream, "n", [1, 2, 3, 4, 5])
    else:
        with pytest.raises(AssertionError):
            assert_lost_only_where_told(stream, "n", [1, 2, 3, 4, 5])


async def follow(followers: list[Follower]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(f.run()) for f in followers]
    await asyncio.gather(*(f.subscribed.wait() for f in followers))
    return tasks


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("drop_pubsub", [False, True], ids=["steady", "pubsub-drop"])
def test_three_node_processes_and_two_publishers_deliver_exactly_once_in_order(
    redis_server: RedisServer, drop_pubsub: bool
) -> None:
    """Channel messages and broadcasts interleaved; with ``pubsub-drop`` every node's
    pub/sub connection is closed by the broker mid-stream: the nodes catch up from the
    streams, and nothing is lost, doubled or reordered."""
    nodes = [Process("node", redis_server.url, f"node{i}") for i in range(3)]
    publishers = [Process("publisher", redis_server.url, f"pub{i}") for i in range(2)]
    per_publisher = 4000  # 5 publishers x 4,000 = 20,000 messages over 20 channels
    followers = [Follower([n.url for n in nodes], f"a{i % CHANNELS}", i % 3) for i in range(300)]
    per_channel = len(nodes + publishers) * per_publisher // CHANNELS
    broadcasts = len(nodes + publishers) * (per_publisher // EVERY)

    def received_all() -> bool:
        return all(
            len(f.messages) >= per_channel and len(f.broadcasts) >= broadcasts for f in followers
        )

    async def scenario() -> None:
        tasks = await follow(followers)
        rate = 2000 if drop_pubsub else 0  # slow enough to drop the connections mid-stream
        publishing = asyncio.gather(
            *(p.publish(per_publisher, CHANNELS, rate, EVERY) for p in nodes + publishers)
        )
        if drop_pubsub:  # a thread: this loop is busy with the clients, which lag behind
            killed = await asyncio.to_thread(drop_pubsub_once_numbered, redis_server.url,
                                             "a0", per_channel // 3)  # fmt: skip
            assert killed == len(nodes)
        await publishing
        await wait_for(received_all, 60, lambda: progress(followers))
        await asyncio.sleep(0.3)  # a duplicate would arrive now
        await stop(tasks)

    try:
        run(scenario())
    finally:
        for process in nodes + publishers:
            process.stop()
    names = {p.name for p in nodes + publishers}
    for follower in followers:
        assert [m["seq"] for m in follower.messages] == list(range(1, 1001))
        assert follower.notices == [] and follower.moves == 0
        got, got_broadcasts = follower.by_publisher(), follower.by_publisher("b")
        assert set(got) == set(got_broadcasts) == names
        for name in names:  # exactly once, in the publisher's order
            assert got[name] == expected_ns(follower.channel, per_publisher, CHANNELS)
            assert got_broadcasts[name] == list(range(per_publisher // EVERY))


def disrupted_stream(
    publisher: Process,
    count: int,
    channels: int,
    followers: list[Follower],
    disrupt: Callable[[], None],
    done: Callable[[], bool],
    processes: list[Process],
) -> None:
    """Publish ``count`` messages at 1,500/s; ``disrupt()`` once every follower has 50 of
    them; wait until ``done()`` (and a moment for duplicates); stop the processes."""

    async def scenario() -> None:
        tasks = await follow(followers)
        publishing = asyncio.create_task(publisher.publish(count, channels, 1500, EVERY))
        await wait_for(lambda: all(len(f.messages) >= 50 for f in followers), 30)
        await asyncio.to_thread(disrupt)
        await publishing
        await wait_for(done, 30, lambda: progress(followers))
        await asyncio.sleep(0.3)
        await stop(tasks)

    try:
        run(scenario())
    finally:
        for process in processes:
            process.stop()


def test_clients_of_a_killed_node_resume_on_another_without_loss_or_duplicate(
    redis_server: RedisServer,
) -> None:
    nodes = [Process("node", redis_server.url, f"node{i}") for i in range(3)]
    publisher = Process("publisher", redis_server.url, "pub0")
    count, channels = 3000, 5
    followers = [Follower([n.url for n in nodes], f"a{i % channels}", i % 3) for i in range(60)]

    disrupted_stream(
        publisher,
        count,
        channels,
        followers,
        disrupt=nodes[0].kill,  # mid-stream: about a third of the clients lose their node
        done=lambda: all(len(f.messages) >= count // channels for f in followers),
        processes=[*nodes, publisher],
    )
    assert sum(f.moves for f in followers) >= 20  # those of node 0 moved
    for follower in followers:
        assert [m["seq"] for m in follower.messages] == list(range(1, count // channels + 1))
        assert follower.by_publisher() == {"pub0": expected_ns(follower.channel, count, channels)}
        assert follower.notices == []


@pytest.mark.redis
@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "no-persistence"])
def test_redis_restart_mid_stream(tmp_path: Path, persistent: bool) -> None:
    """Persistent: nodes and publishers reconnect and catch up, nothing is lost. Without
    persistence the numbering starts over: clients are told, never lose silently."""
    redis_server = RedisServer(tmp_path, persistent=persistent).start()
    nodes = [Process("node", redis_server.url, f"node{i}") for i in range(2)]
    publisher = Process("publisher", redis_server.url, "pub0")
    count, channels = 3000, 5
    followers = [Follower([n.url for n in nodes], f"a{i % channels}", i % 2) for i in range(30)]

    last_broadcast = count // EVERY - 1

    def received_all() -> bool:
        return all(
            f.by_publisher().get("pub0", [-1])[-1] == expected_ns(f.channel, count, channels)[-1]
            and f.by_publisher("b").get("pub0", [-1])[-1] == last_broadcast
            for f in followers
        )

    try:
        disrupted_stream(
            publisher,
            count,
            channels,
            followers,
            disrupt=redis_server.restart,
            done=received_all,
            processes=[*nodes, publisher],
        )
    finally:
        redis_server.stop()
    expected_broadcasts = list(range(last_broadcast + 1))
    for follower in followers:
        ns = follower.by_publisher()["pub0"]
        expected = expected_ns(follower.channel, count, channels)
        assert follower.moves == 0
        if persistent:
            assert [m["seq"] for m in follower.messages] == list(range(1, len(expected) + 1))
            assert ns == expected and follower.notices == []
            assert follower.by_publisher("b")["pub0"] == expected_broadcasts
        else:
            # Told, on the channel and on the broadcasts: a notice saying the numbering
            # restarted, standing where the loss is.
            for agent_id, key, values, code in [
                (follower.channel, "n", expected, "channel_restarted"),
                (None, "b", expected_broadcasts, "broadcasts_lost"),
            ]:
                stream = follower.stream_of(agent_id)
                notices = [m for m in stream if "code" in m]
                assert [n["code"] for n in notices] == [code]
                assert notices[0].get("restarted") is True
                assert_lost_only_where_told(stream, key, values)
