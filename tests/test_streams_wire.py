"""Agent event streams on the wire, with real clients on 127.0.0.1: the native protocol
(``?protocol=agentcast``) beside MemGPT's, a join mid-run, a laggard's merged deltas and a
``since`` resume across a merge."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import orjson
import websockets
from ag_ui.core import Event as AgUiEvent
from pydantic import TypeAdapter

from agentcast import Broadcaster, Client, SyncClient
from agentcast.memgpt.app import AgentServer
from clients import masked_text, parse_frames, raw_upgrade, run, user_message, wait_for
from stream_checks import (
    NATIVE,
    check_covers,
    check_stream,
    long_run,
    read_until,
    subscribe,
    subscribing_hub,
    text,
    texts,
    websockets_laggard,
)

# A laggard's budget holds the whole run: merging saves envelopes, not text.
LAGGARD_BUDGET = 32 * 1024 * 1024


def test_a_native_watcher_sees_the_demo_run_stream_and_memgpt_the_whole_messages() -> None:
    server = AgentServer(port=0).start()
    try:

        async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            url = f"ws://127.0.0.1:{server.port}/"
            async with (
                websockets.connect(url + NATIVE) as watcher,
                websockets.connect(url) as talker,
            ):
                await watcher.send(orjson.dumps({"type": "subscribe", "channel": "a1"}).decode())
                assert orjson.loads(await watcher.recv()) == {"type": "subscribed", "channel": "a1"}
                await talker.send(orjson.dumps(user_message("hi there")).decode())
                memgpt = []
                while (reply := orjson.loads(await talker.recv()))["type"] != "agent_response_end":
                    memgpt.append(reply)
                return await read_until(watcher, "run_end"), memgpt

        events, memgpt = run(scenario())
    finally:
        server.stop()
    check_stream(events)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert events[0]["prompt"] == "hi there"  # a watcher sees what the step answers
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    starts = [e for e in events if e["type"] == "message_start"]
    assert [(s["role"], s["kind"]) for s in starts] == [
        ("assistant", "reasoning"),
        ("assistant", "text"),
    ]
    assert text(events, starts[0]["message_id"]) == "The user said 'hi there'; I will echo it back."
    assert text(events, starts[1]["message_id"]) == "You said: hi there"
    assert kinds.count("message_delta") > 2 and "tool_call_delta" in kinds
    assert [(m["type"], m.get("message_type"), m.get("message")) for m in memgpt] == [
        ("agent_response_start", None, None),
        ("agent_response", "internal_monologue", "The user said 'hi there'; I will echo it back."),
        (
            "agent_response",
            "function_message",
            "Running send_message({'message': 'You said: hi there'})",
        ),
        ("agent_response", "assistant_message", "You said: hi there"),
    ]


def test_an_unknown_protocol_is_refused_with_400(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory()
    sock = socket.create_connection(("127.0.0.1", hub.port))
    sock.sendall(
        b"GET /?protocol=nope HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.settimeout(10)
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"unknown protocol 'nope': one of memgpt, agentcast" in answer
    assert hub.stats()["upgrades_refused_handshake"] == 1


def test_a_watcher_joining_mid_run_gets_a_valid_stream_from_its_first_frame(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = subscribing_hub(hub_factory)
    full = "".join(f"token{i} " for i in range(40))

    async def scenario() -> list[dict[str, Any]]:
        run_ = hub.run("a", run_id="r1", prompt="count to 40")
        run_.start()
        message = run_.message(message_id="m1")
        for i in range(20):
            message.delta(f"token{i} ")
        async with websockets.connect(f"ws://127.0.0.1:{hub.port}/{NATIVE}") as watcher:
            await subscribe(watcher, "a")
            for i in range(20, 40):
                message.delta(f"token{i} ")
            message.end()
            run_.end()
            return await read_until(watcher, "run_end")

    events = run(scenario())
    check_stream(events)
    assert events[0] == {
        "type": "run_start",
        "channel": "a",
        "seq": 1,
        "run_id": "r1",
        "prompt": "count to 40",  # what the run answers, in the snapshot too
    }
    assert events[2]["from_seq"] == 3 and events[2]["seq"] == 22  # the 20 deltas so far, merged
    assert text(events, "m1") == full


def test_a_laggard_gets_merged_deltas_the_same_text_and_resumes_across_a_merge(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    # History keeps the whole run, so the resume below replays from it.
    hub = subscribing_hub(
        hub_factory,
        lag_threshold=16 * 1024,
        client_budget=LAGGARD_BUDGET,
        history_size=100_000,
        history_bytes=64 * 1024 * 1024,
    )
    # ~10 MB of frames: more than the kernel buffers a stalled reader even without
    # notsent_lowat (4 MiB on Linux), so the rest waits in the server's transport and the
    # laggard's backlog.
    pieces = [f"w{i:05} " + "x" * 100 for i in range(60_000)]
    laggard = raw_upgrade(hub.port, rcvbuf=4096, path="/" + NATIVE)
    try:
        laggard.sendall(masked_text(orjson.dumps({"type": "subscribe", "channel": "a"})))
        run(wait_for(lambda: hub.stats()["subscriptions"] == 1, what="the laggard subscribed"))
        with hub.run("a", run_id="r") as producer, producer.message(message_id="m") as message:
            for piece in pieces:  # a tick now and then, as a model's tokens come
                message.delta(piece)
        run(wait_for(lambda: hub.stats()["pending"] == 0, what="everything applied"))
        assert hub.stats()["lag_episodes"] >= 1
        laggard.settimeout(10)
        data = b""
        while not data.endswith(
            b'"run_end","channel":"a","seq":60004,"run_id":"r","outcome":"success"}'
        ):
            chunk = laggard.recv(1 << 16)
            assert chunk, "the server closed the laggard"
            data += chunk
    finally:
        laggard.close()
    frames = [orjson.loads(payload) for _, payload in parse_frames(data)]
    assert frames[0] == {"type": "subscribed", "channel": "a"}
    events = frames[1:]
    check_stream(events)
    assert text(events, "m") == "".join(pieces)
    merged = [e for e in events if "from_seq" in e]
    assert merged, "nothing was merged"
    assert len(events) < len(pieces) // 2
    assert hub.stats()["dropped_clients"] == 0

    # A resume from a merged frame's seq gets exactly what comes after it.
    middle = merged[len(merged) // 2]
    held = text([e for e in events if e["seq"] <= middle["seq"]], "m")

    async def resume() -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{hub.port}/{NATIVE}") as watcher:
            await subscribe(watcher, "a", since=middle["seq"])
            return await read_until(watcher, "run_end")

    rest = run(resume())
    assert held + text(rest, "m") == "".join(pieces)
    assert rest[0]["seq"] > middle["seq"]


def test_a_websockets_laggard_gets_exact_merged_ranges_and_resumes_inside_and_after_a_merge(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    # History keeps the whole run, so the resumes below replay from it.
    hub = subscribing_hub(
        hub_factory,
        lag_threshold=16 * 1024,
        client_budget=LAGGARD_BUDGET,
        history_size=100_000,
        history_bytes=64 * 1024 * 1024,
    )
    # ~9 MB of frames: more than the kernel buffers a stalled reader even without
    # notsent_lowat (4 MiB on Linux), so the rest waits in the server's transport and the
    # laggard's backlog.
    produced = long_run(40_000)

    async def lag() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        laggard = await websockets_laggard(hub.port)
        try:
            await subscribe(laggard, "a")
            for event in produced:  # this loop reads nothing meanwhile
                hub.publish_event(event, "a")
            await wait_for(lambda: hub.stats()["pending"] == 0, what="everything applied")
            events = await read_until(laggard, "run_end")
            return events, hub.stats()
        finally:
            await laggard.close()

    events, stats = run(lag())
    check_stream(events)
    check_covers(events, produced)
    assert texts(events) == texts(produced)
    assert {"message_end", "tool_call_end", "run_end"} <= {e["type"] for e in events}
    merged = [e for e in events if "from_seq" in e]
    assert merged, "nothing was merged"
    assert stats["lag_episodes"] >= 1 and stats["dropped_clients"] == 0
    assert stats["merged_deltas"] == sum(e["seq"] - e["from_seq"] for e in merged)

    async def resume(since: int) -> list[dict[str, Any]]:
        async with websockets.connect(
            f"ws://127.0.0.1:{hub.port}/{NATIVE}", max_size=None
        ) as watcher:
            await subscribe(watcher, "a", since=since)
            return await read_until(watcher, "run_end")

    wide = [e for e in merged if e["seq"] - e["from_seq"] >= 2]
    middle = wide[len(wide) // 2]
    inside = (middle["from_seq"] + middle["seq"]) // 2
    assert middle["from_seq"] < inside < middle["seq"]
    for since in (inside, middle["seq"]):
        check_covers(run(resume(since)), produced, first=since + 1)


def test_the_client_assembles_the_demo_run_it_asked_for_and_a_sync_one_joins_it() -> None:
    server = AgentServer(port=0).start()
    url = f"ws://127.0.0.1:{server.port}/"
    try:

        async def talk() -> tuple[list[dict[str, Any]], dict[str, str]]:
            async with Client(url, channel="a1") as client:
                await client.send("stream me")
                events = []
                async for event in client:
                    events.append(event)
                    if event["type"] == "run_end":
                        return events, dict(client.messages)
            raise AssertionError("the stream ended before run_end")

        events, messages = run(talk())
        with SyncClient(url, channel="a1") as late:  # the run has ended: nothing is open
            run(wait_for(lambda: server.hub.stats()["subscriptions"] == 1, what="subscribed"))
            server.hub.publish_event({"type": "custom", "name": "ping", "value": 1}, "a1")
            assert next(iter(late))["type"] == "custom"
    finally:
        server.stop()
    check_stream(events)
    assert sorted(messages.values()) == [
        "The user said 'stream me'; I will echo it back.",
        "You said: stream me",
    ]


def test_an_ack_overtakes_a_laggards_backlog_and_the_run_end_follows_it(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = subscribing_hub(hub_factory, lag_threshold=16 * 1024, client_budget=LAGGARD_BUDGET)
    laggard = raw_upgrade(hub.port, rcvbuf=4096, path="/" + NATIVE)
    try:
        laggard.sendall(masked_text(orjson.dumps({"type": "subscribe", "channel": "a"})))
        run(wait_for(lambda: hub.stats()["subscriptions"] == 1, what="the laggard subscribed"))
        with hub.run("a", run_id="r") as producer, producer.message(message_id="m") as message:
            for i in range(60_000):
                message.delta(f"w{i:05} " + "x" * 100)
        run(wait_for(lambda: hub.stats()["pending"] == 0, what="everything applied"))
        held = hub.channel_info("a")["last_seq"]  # every event is queued for the laggard
        laggard.sendall(masked_text(orjson.dumps({"type": "subscribe", "channel": "b"})))
        run(wait_for(lambda: hub.stats()["subscriptions"] == 2, what="the ack queued"))
        laggard.settimeout(10)
        data = b""
        while not data.endswith(b'"outcome":"success"}'):
            chunk = laggard.recv(1 << 16)
            assert chunk, "the server closed the laggard"
            data += chunk
    finally:
        laggard.close()
    frames = [orjson.loads(payload) for _, payload in parse_frames(data)]
    ack = frames.index({"type": "subscribed", "channel": "b"})
    behind = [f for f in frames[ack + 1 :] if "seq" in f]
    assert behind and all(f["seq"] <= held for f in behind)  # it overtook the backlog
    assert behind[-1]["type"] == "run_end" and text(frames[1:], "m").startswith("w00000 ")


def test_an_ack_overtakes_a_websockets_laggards_backlog_and_nothing_is_lost(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = subscribing_hub(hub_factory, lag_threshold=16 * 1024, client_budget=LAGGARD_BUDGET)
    produced = long_run(40_000)

    async def lag() -> list[dict[str, Any]]:
        laggard = await websockets_laggard(hub.port)
        try:
            await subscribe(laggard, "a")
            for event in produced:
                hub.publish_event(event, "a")
            await wait_for(lambda: hub.stats()["pending"] == 0, what="everything applied")
            await laggard.send(orjson.dumps({"type": "subscribe", "channel": "b"}).decode())
            await wait_for(lambda: hub.stats()["subscriptions"] == 2, what="the ack queued")
            frames = [orjson.loads(await laggard.recv())]
            while frames[-1]["type"] != "run_end":
                frames.append(orjson.loads(await laggard.recv()))
            return frames
        finally:
            await laggard.close()

    frames = run(lag())
    ack = {"type": "subscribed", "channel": "b"}
    assert ack in frames, "the ack came after the whole backlog"
    assert any("seq" in f for f in frames[frames.index(ack) + 1 :]), "nothing was behind it"
    assert hub.stats()["merged_deltas"] >= 1
    check_covers([f for f in frames if "seq" in f], produced)


def test_a_rollup_window_sends_close_deltas_as_one_event_to_every_watcher(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = subscribing_hub(hub_factory)
    pieces = [f"t{i} " for i in range(500)]

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{hub.port}/{NATIVE}") as watcher:
            await subscribe(watcher, "a")
            with hub.run("a", rollup=0.05) as producer, producer.message(message_id="m") as m:
                for piece in pieces:  # far faster than 50 ms apart: a handful of windows
                    m.delta(piece)
            return await read_until(watcher, "run_end")

    events = run(scenario())
    check_stream(events)
    deltas = [e for e in events if e["type"] == "message_delta"]
    assert text(events, "m") == "".join(pieces)
    assert 1 <= len(deltas) < 50 and not any("from_seq" in e for e in deltas)
    assert hub.stats()["events"] == len(events)


def test_with_notsent_lowat_a_stalled_reader_lags_after_kilobytes_not_the_kernels_megabytes(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = subscribing_hub(hub_factory, lag_threshold=16 * 1024, notsent_lowat=16 * 1024)
    laggard = raw_upgrade(hub.port, rcvbuf=4096, path="/" + NATIVE)
    try:
        laggard.sendall(masked_text(orjson.dumps({"type": "subscribe", "channel": "a"})))
        run(wait_for(lambda: hub.stats()["subscriptions"] == 1, what="the laggard subscribed"))
        with hub.run("a") as producer, producer.message() as message:
            for sent in range(1, 4001):  # at most 4,000 x 70 B: far below 4 MiB
                message.delta("token ")
                if sent % 100 == 0:
                    run(wait_for(lambda: hub.stats()["pending"] == 0, what="applied"))
                    if hub.stats()["lag_episodes"]:
                        break
        assert hub.stats()["lag_episodes"] == 1, f"no lag after {sent} deltas"
        assert sent * 70 < 1024 * 1024
    finally:
        laggard.close()


def test_the_fields_protocols_over_websocket_by_query_or_subprotocol() -> None:
    """``?protocol=agui`` and a ``Sec-WebSocket-Protocol: aisdk`` offer (echoed) each get
    the demo agent's run in their own protocol, beside a MemGPT client."""
    server = AgentServer(port=0).start()
    try:

        async def frames_until(websocket: Any, last: str) -> list[dict[str, Any]]:
            frames = []
            while (frame := orjson.loads(await websocket.recv())).get("type") != last:
                frames.append(frame)
            return [*frames, frame]

        async def scenario() -> tuple[list[Any], list[Any], str | None]:
            url = f"ws://127.0.0.1:{server.port}/"
            async with (
                websockets.connect(url + "?protocol=agui") as agui,
                websockets.connect(url, subprotocols=["x-none", "aisdk"]) as aisdk,  # type: ignore[list-item]
                websockets.connect(url) as talker,
            ):
                for watcher in (agui, aisdk):
                    await subscribe(watcher, "a1")
                await talker.send(orjson.dumps(user_message("hi there")).decode())
                return (
                    await frames_until(agui, "RUN_FINISHED"),
                    await frames_until(aisdk, "finish"),
                    aisdk.subprotocol,
                )

        agui, aisdk, subprotocol = run(scenario())
    finally:
        server.stop()
    assert subprotocol == "aisdk"
    for frame in agui:  # every one an AG-UI event as the protocol's own models define it
        assert not TypeAdapter(AgUiEvent).validate_python(frame).model_extra, frame
    assert agui[0]["type"] == "RUN_STARTED" and agui[0]["threadId"] == "a1"
    assert all(frame["metadata"]["agentcast"]["seq"] > 0 for frame in agui)
    reply = "".join(f["delta"] for f in agui if f["type"] == "TEXT_MESSAGE_CONTENT")
    assert reply == "".join(f["delta"] for f in aisdk if f["type"] == "text-delta")
    assert reply and aisdk[0]["type"] == "start"
    assert all("seq" not in frame for frame in aisdk)


def test_an_sse_encoding_name_is_no_websocket_protocol(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory()
    with socket.create_connection(("127.0.0.1", hub.port)) as sock:
        sock.sendall(
            b"GET /?protocol=agui%2Bsse HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"one of memgpt, agentcast, agui, aisdk, letta" in answer
