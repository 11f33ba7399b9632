"""Channels nobody watches are freed after ``channel_ttl``, and all history together is bounded
(``history_total_bytes``): agents a client creates and leaves do not keep memory forever."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import orjson
import uvloop
import websockets

from agentcast import Broadcaster, notices
from agentcast._ext import FanoutCore, MemorySink
from agentcast.memgpt import protocol
from broadcaster_process import BroadcasterProcess
from clients import drain, frames_of, parse_frames, run, wait_for
from serve_cli import serving


def test_a_sweep_frees_only_channels_idle_for_the_ttl(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=lambda _: None, channel_ttl=10.0)
    watcher = core.add_client(MemorySink())
    for name in ("left", "watched", "late"):
        core.publish_json(b'{"m":1}', name)
    core.subscribe(watcher, "watched")
    drain(core)
    assert core.sweep_idle(0.0) == 0  # nothing is older than the first sweep
    core.publish_json(b'{"m":2}', "late")  # used after the sweep at 0.0
    drain(core)
    assert core.sweep_idle(5.0) == 0
    assert core.sweep_idle(10.0) == 1  # "left": idle since before 0.0; "late": not yet 10 s
    assert core.channel_info("left") is None
    assert core.channel_info("late") is not None
    assert core.channel_info("watched") is not None  # subscribed: never idle
    assert core.sweep_idle(15.0) == 1  # "late" now
    core.unsubscribe(watcher, "watched")  # its idle time starts now, not at its last message
    drain(core)
    assert core.sweep_idle(24.0) == 0
    assert core.sweep_idle(30.0) == 0  # sweeps are its clock: left after the one at 15.0
    assert core.sweep_idle(34.0) == 1  # 10 s after the first sweep that saw it left
    stats = core.stats()
    assert (stats["channels"], stats["freed_channels"], stats["history_bytes"]) == (0, 3, 0)


def test_history_of_all_channels_is_bounded_oldest_of_the_least_recently_used_first(
    loop: uvloop.Loop,
) -> None:
    limit = 100_000
    core = FanoutCore(
        loop, wake=lambda _: None, history_total_bytes=limit, history_size=20, channel_ttl=None
    )
    sink = MemorySink()
    client = core.add_client(sink)
    payload = orjson.dumps({"pad": "x" * 1000})
    frame_bytes = len(payload) + 4 + len(',"seq":NNN')  # header, seq of up to 3 digits
    for step in range(180):  # 360 KB in all: 60 cold channels, 3 messages each, and a hot one
        core.publish_json(payload, f"agent-{step % 60}")
        core.publish_json(payload, "hot")
        drain(core)
        assert core.stats()["history_bytes"] <= limit
    assert core.stats()["history_trims"] > 0
    # The channel used all along keeps its full history; the least recently used lost theirs.
    hot = core.channel_info("hot")
    assert (hot["frames"], hot["first_seq"], hot["bytes"]) == (20, 161, 20 * frame_bytes)  # type: ignore[index]
    assert core.channel_info("agent-0")["frames"] < 3  # type: ignore[index]
    # A resume of what was trimmed is told so, and why.
    first_kept = core.channel_info("agent-0")["first_seq"]  # type: ignore[index]
    core.subscribe(client, "agent-0", since=0)
    drain(core)
    (_, notice), *_ = parse_frames(bytes(sink.data))
    assert orjson.loads(notice) == orjson.loads(notices.resume_gap("agent-0", 0, first_kept, 3))
    assert "freed with its history" in orjson.loads(notice)["message"]


def test_channels_created_and_left_are_freed_after_the_ttl(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(channel_ttl=0.05, max_subscriptions=None)
    url = f"ws://127.0.0.1:{hub.port}/"

    async def watch_and_leave(agents: list[str]) -> None:
        async with websockets.connect(url) as ws:
            await wait_for(lambda: hub.client_count == 1)
            (client,) = hub._thread.call(hub._core.client_ids)
            for agent in agents:
                hub.subscribe(client, agent)
                hub.publish({"said": "something"}, channel=agent)
            for _ in agents:
                await ws.recv()
        await wait_for(lambda: hub.client_count == 0)

    for round_ in range(2):
        run(watch_and_leave([f"r{round_}-{i}" for i in range(100)]))
        run(wait_for(lambda: hub.stats()["channels"] == 0, what=lambda: str(hub.stats())))
    assert hub.stats()["freed_channels"] == 200

    async def late_resume() -> dict:
        async with websockets.connect(url) as ws:
            await wait_for(lambda: hub.client_count == 1)
            (client,) = hub._thread.call(hub._core.client_ids)
            hub.subscribe(client, "r1-0", since=1)
            return orjson.loads(await ws.recv())  # type: ignore[no-any-return]

    notice = run(late_resume())
    assert notice["code"] == "channel_restarted" and notice["agent_id"] == "r1-0"
    assert "freed with its history" in notice["message"]


def test_rss_is_flat_across_rounds_of_agents_given_one_large_message_each() -> None:
    """60 agents with one 340 KB message each, nobody watching: +56 MB a round before."""
    server = BroadcasterProcess(channel_ttl=0.2)
    rss = []
    try:
        for round_ in range(3):
            server.publish(f"r{round_}", 60, 340_000)
            run(wait_for(lambda: server.status()["channels"] == 0, 20, "channels freed"))
            rss.append(server.status()["rss_kib"])
    finally:
        assert server.stop() == 0
    assert rss[2] - rss[1] < 8 * 1024, rss  # KiB; one round's messages are ~40 MB


def test_a_new_channel_beyond_the_cap_evicts_the_least_recently_used_idle_one(
    loop: uvloop.Loop,
) -> None:
    core = FanoutCore(loop, wake=lambda _: None, max_channels=3)
    for name in ("a", "b", "c", "a"):  # "a" used again: "b" is now the least recent
        core.publish_json(b'{"m":1}', name)
        drain(core)
    core.publish_json(b'{"m":1}', "d")
    drain(core)
    assert [core.channel_info(name) is not None for name in "abcd"] == [True, False, True, True]
    assert core.channel_info("a")["last_seq"] == 2  # type: ignore[index]
    stats = core.stats()
    assert (stats["channels"], stats["evicted_channels"], stats["refused_channels"]) == (3, 1, 0)


def test_a_channel_with_subscribers_is_never_evicted_and_a_new_one_is_refused(
    loop: uvloop.Loop,
) -> None:
    core = FanoutCore(loop, wake=lambda _: None, max_channels=2)
    watcher, newcomer = MemorySink(), MemorySink()
    watcher_id, newcomer_id = core.add_client(watcher), core.add_client(newcomer)
    core.publish_json(b'{"m":1}', "idle")
    core.subscribe(watcher_id, "watched")
    core.subscribe(newcomer_id, "new", ack=b'{"ack":"new"}')  # evicts "idle"
    core.subscribe(newcomer_id, "newer", ack=b'{"ack":"newer"}')  # both busy: refused
    core.publish_json(b'{"m":2}', "nobody")  # refused too: reaches no one, kept nowhere
    core.publish_json(b'{"m":3}', "watched")
    drain(core)
    assert core.channel_info("idle") is None and core.channel_info("nobody") is None
    assert [orjson.loads(f) for f in frames_of(watcher)] == [{"m": 3, "seq": 1}]
    ack, notice = (orjson.loads(f) for f in frames_of(newcomer))
    assert ack == {"ack": "new"}
    assert notice == orjson.loads(notices.too_many_channels("newer", 2))
    stats = core.stats()
    assert (stats["channels"], stats["evicted_channels"], stats["refused_channels"]) == (2, 1, 2)
    core.unsubscribe(watcher_id, "watched")  # idle again: evictable
    core.subscribe(newcomer_id, "newer")
    drain(core)
    assert core.channel_info("watched") is None and core.channel_info("newer") is not None


def test_a_sweep_looks_at_a_bounded_number_of_channels_least_recently_used_first(
    loop: uvloop.Loop,
) -> None:
    core = FanoutCore(loop, wake=lambda _: None, channel_ttl=10.0)
    for i in range(10):
        core.publish_json(b'{"m":1}', f"old-{i}")
    drain(core)
    core.sweep_idle(0.0)
    core.publish_json(b'{"m":1}', "recent")
    drain(core)
    assert [core.sweep_idle(10.0, limit=4) for _ in range(4)] == [4, 4, 2, 0]
    assert core.channel_info("recent") is not None  # the sweep stopped at it
    assert core.stats()["freed_channels"] == 10


def test_the_channel_cap_holds_under_churn_of_fresh_ids_through_a_real_server() -> None:
    """subscribe-with-since + unsubscribe to fresh ids (as the attack did, 416k records in
    70 s), with `agentcast serve --max-channels`; then a client watching every channel
    there is makes the next new one refused with an error frame."""
    cap = 50

    async def churn(url: str, round_: int) -> None:
        async with websockets.connect(url) as ws:
            for i in range(60):
                agent = f"fresh-{round_}-{i}"
                for request in (protocol.subscribe(agent, since=0), protocol.unsubscribe(agent)):
                    await ws.send(request.decode())
                    assert orjson.loads(await ws.recv())["type"] == "command_response"

    async def watch_all_then_one_more(url: str) -> list[dict]:
        async with websockets.connect(url) as ws:
            replies = []
            for i in range(cap + 1):
                await ws.send(protocol.subscribe(f"watched-{i}").decode())
                replies.append(orjson.loads(await ws.recv()))
            return replies

    options = (f"--max-channels={cap}", "--max-subscriptions=100", "--max-message-rate=0")
    with serving(*options) as (_, port):
        url = f"ws://127.0.0.1:{port}/"
        for round_ in range(3):
            run(churn(url, round_))
        assert channels_of(port) == cap
        replies = run(watch_all_then_one_more(url))
        assert channels_of(port) == cap
    assert all(r["type"] == "command_response" for r in replies[:cap])
    assert replies[cap]["code"] == "too_many_channels"
    assert (replies[cap]["agent_id"], replies[cap]["limit"]) == (f"watched-{cap}", cap)


def channels_of(port: int) -> int:
    """The channels a server keeps, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    (line,) = (line for line in text.splitlines() if line.startswith("agentcast_channels "))
    return int(float(line.split()[1]))
