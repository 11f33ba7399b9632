"""Channels nobody watches are freed after ``channel_ttl``, and all history together is bounded
(``history_total_bytes``): agents a client creates and leaves do not keep memory forever."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import uvloop
import websockets

from agentcast import Broadcaster, notices
from agentcast._ext import FanoutCore, MemorySink
from broadcaster_process import BroadcasterProcess
from clients import drain, parse_frames, run, wait_for


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
    assert "channel_ttl" in orjson.loads(notice)["message"]


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
    assert "channel_ttl" in notice["message"]


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
