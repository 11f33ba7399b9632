"""The core under faults: bad operations, queued subscribes, closing sinks, resubscribes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

import orjson
import pytest
import uvloop

from agentcast import Broadcaster
from agentcast._ext import CallbackSink, FanoutCore, MemorySink
from agentcast.memgpt import protocol
from agentcast.memgpt.app import AgentServer
from agentcast.notices import Notices
from clients import parse_frames, run, websockets_clients
from redis_server import RedisServer


class Wakeups:
    """Stands in for the loop's wake-up: the test drives ``tick`` itself."""

    def __call__(self, callback: object) -> None:
        pass


def received(sink: MemorySink) -> list[dict]:
    assert sink.data is not None
    return [orjson.loads(payload) for _, payload in parse_frames(bytes(sink.data))]


@pytest.mark.parametrize("method", ["publish", "publish_json", "publish_binary"])
def test_unhashable_channel_is_refused_in_the_caller(loop: uvloop.Loop, method: str) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    payload = {"x": 1} if method == "publish" else b'{"x":1}'
    with pytest.raises(TypeError, match="unhashable"):
        getattr(core, method)(payload, ["agent"])
    assert core.pending == 0  # nothing queued that a tick would trip on


def failing_history_gap(agent_id: Hashable, since: int, first_seq: int, last_seq: int) -> bytes:
    raise RuntimeError("notice builder broke")


# A resume that needs a gap notice fails when a tick applies it.
FAILING_GAP_NOTICE = Notices(history_gap=failing_history_gap)


def test_a_failing_operation_loses_nothing_else_of_its_tick(
    loop: uvloop.Loop, caplog: pytest.LogCaptureFixture
) -> None:
    core = FanoutCore(loop, wake=Wakeups(), notices=FAILING_GAP_NOTICE)
    alice, bob = MemorySink(), MemorySink()
    a, b = core.add_client(alice), core.add_client(bob)
    core.subscribe(a, "x")
    core.subscribe(b, "x")
    core.tick()
    core.publish({"n": 1}, "x")
    core.send_json(a, b'{"direct":true}')
    core.subscribe(a, "y", since=5)  # fails when applied: the gap notice cannot be built
    core.publish({"n": 2}, "x")
    core.publish({"n": 3})
    core.tick()  # does not raise
    assert received(alice) == [{"n": 1, "seq": 1}, {"direct": True}, {"n": 2, "seq": 2}, {"n": 3}]
    assert received(bob) == [{"n": 1, "seq": 1}, {"n": 2, "seq": 2}, {"n": 3}]
    assert core.stats()["failed_ops"] == 1
    logged = [r for r in caplog.records if r.name == "agentcast.core"]
    assert len(logged) == 1 and "notice builder broke" in logged[0].exc_text


def test_subscriber_count_includes_subscribes_still_queued(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    a, b = core.add_client(MemorySink()), core.add_client(MemorySink())
    core.subscribe(a, "x")
    core.subscribe(b, "x", since=0)
    assert core.subscriber_count("x") == 2  # queued, not yet applied: the channel is not idle
    core.tick()
    assert core.subscriber_count("x") == 2
    core.unsubscribe(a, "x")
    core.unsubscribe(b, "x")
    core.tick()
    assert core.subscriber_count("x") == 0
    core.subscribe(a, "y")
    core.remove_client(a)
    core.tick()  # a subscribe for a client gone meanwhile is still taken off the count
    assert core.subscriber_count("y") == 0


def test_a_restarted_channel_starts_anew_without_a_false_gap(
    loop: uvloop.Loop, caplog: pytest.LogCaptureFixture
) -> None:
    """The backplane's sweep restarts an idle channel; a later sync accepts the stream's
    kept tail (here seqs 2..3): that is a fresh start, not seq 1 lost."""
    core = FanoutCore(loop, wake=Wakeups())
    sink = MemorySink()
    client = core.add_client(sink)
    core.accept("x", [(1, b'{"n":1,"seq":1}'), (2, b'{"n":2,"seq":2}')])
    core.renumber("x")
    core.tick()
    core.subscribe(client, "x")
    core.accept("x", [(2, b'{"n":2,"seq":2}'), (3, b'{"n":3,"seq":3}')])
    core.tick()
    assert received(sink) == [{"n": 2, "seq": 2}, {"n": 3, "seq": 3}]
    assert core.stats()["gaps"] == 1  # the restart itself, nothing lost after it
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
    info = core.channel_info("x")
    assert info is not None and (info["first_seq"], info["last_seq"]) == (2, 3)


def test_a_forgotten_channel_starts_anew_with_no_gap_unless_a_client_holds_it(
    loop: uvloop.Loop,
) -> None:
    """The backplane forgets a channel it stopped following: its seq and history go with
    no notice and no gap; the next frames accepted (the stream's kept tail) start it
    anew. A channel a client holds is kept as it is."""
    core = FanoutCore(loop, wake=Wakeups())
    sink = MemorySink()
    client = core.add_client(sink)
    core.accept("x", [(1, b'{"n":1,"seq":1}'), (2, b'{"n":2,"seq":2}')])
    core.subscribe(client, "held")
    core.accept("held", [(1, b'{"n":1,"seq":1}')])
    core.forget("x")
    core.forget("held")
    core.tick()
    assert core.channel_info("x") is None
    core.subscribe(client, "x")
    core.accept("x", [(5, b'{"n":5,"seq":5}'), (6, b'{"n":6,"seq":6}')])
    core.tick()
    assert received(sink) == [{"n": 1, "seq": 1}, {"n": 5, "seq": 5}, {"n": 6, "seq": 6}]
    assert core.stats()["gaps"] == 0
    assert core.stats()["freed_channels"] == 1
    held = core.channel_info("held")
    assert held is not None and held["last_seq"] == 1


def test_backplane_sweep_keeps_a_channel_whose_subscribe_is_queued_in_the_core(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """With ticks paced 4 s apart, a subscribe handed to the core waits there for the next
    tick while the idle sweep (every second, two idle looks) considers the channel."""
    box: list[Broadcaster] = []

    def on_message(client_id: int, data: bytes) -> None:
        message = protocol.parse_client_message(data)
        assert isinstance(message, protocol.Subscribe)
        hub = box[0]
        hub.send_json(client_id, b'{"type":"ack"}')  # a tick now: the next is 4 s away
        hub.subscribe(client_id, message.agent_id)
        hub.after_pending(lambda: hub.send_json(client_id, b'{"type":"subscribed"}'))

    hub = hub_factory(backplane=redis_server.url, on_message=on_message, flush_interval=4.0)
    box.append(hub)

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}", 1) as (client,):
            await client.send(protocol.subscribe("agent-x").decode())
            got = [orjson.loads(await asyncio.wait_for(client.recv(), 30)) for _ in range(2)]
            assert got == [{"type": "ack"}, {"type": "subscribed"}]
            hub.publish({"n": 1}, "agent-x")
            message = orjson.loads(await asyncio.wait_for(client.recv(), 30))
            assert message == {"n": 1, "seq": 1}  # not a "restarted" notice, nor nothing

    run(scenario())
    assert hub.stats()["gaps"] == 0


class Recorder:
    """The callables of a CallbackSink, recording what the core asked of it."""

    def __init__(self, unsent: int = 0) -> None:
        self.unsent = unsent
        self.is_closing = False
        self.taken: list[bytes] = []
        self.closed: list[int] = []
        self.aborted = 0

    def sink(self) -> CallbackSink:
        return CallbackSink(
            self.taken.append,
            lambda: self.unsent,
            lambda code, reason: self.closed.append(code),
            self.abort,
            closing=lambda: self.is_closing,
        )

    def abort(self) -> None:
        self.aborted += 1


def test_a_closing_sink_is_written_nothing_more_and_not_closed_again(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    recorder = Recorder()
    core.add_client(recorder.sink())
    core.publish({"n": 1})
    core.tick()
    recorder.is_closing = True  # its connection is going away, with nothing unsent
    core.publish({"n": 2})
    core.tick()
    core.close_all(1001, "bye")
    assert [orjson.loads(p) for _, p in parse_frames(b"".join(recorder.taken))] == [{"n": 1}]
    assert (recorder.closed, recorder.aborted) == ([], 0)


def test_a_negative_unsent_count_fails_the_sink_loudly_not_mutes_it(
    loop: uvloop.Loop, caplog: pytest.LogCaptureFixture
) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    recorder = Recorder(unsent=-3)  # an accounting bug in the sink's owner
    core.add_client(recorder.sink())
    core.publish({"n": 1})
    core.tick()
    assert recorder.aborted == 1 and core.stats()["write_errors"] == 1
    assert any("cannot be negative" in (r.exc_text or "") for r in caplog.records)


def test_close_all_closes_the_others_when_one_sink_fails(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    broken, fine = Recorder(unsent=-1), MemorySink()
    core.add_client(broken.sink())
    core.add_client(fine)
    core.close_all(1001, "bye")
    assert broken.aborted == 1 and fine.close_code == 1001


def seqs(sink: MemorySink) -> list[int | str]:
    """Each frame's seq, or its notice code."""
    return [m.get("seq", m.get("code")) for m in received(sink)]


def test_resubscribe_with_since_while_subscribed_repeats_nothing(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    early, late = MemorySink(), MemorySink()
    a, b = core.add_client(early), core.add_client(late)
    core.subscribe(a, "x")
    for n in (1, 2):
        core.publish({"n": n}, "x")
    core.subscribe(b, "x")  # holds 3 on
    for n in (3, 4):
        core.publish({"n": n}, "x")
    core.subscribe(a, "x", since=1)  # holds 1.. already: nothing to replay
    core.subscribe(b, "x", since=0)  # lacks 1 and 2 only
    core.publish({"n": 5}, "x")
    core.subscribe(b, "x", since=0)  # asked again: it holds everything now
    core.tick()
    assert seqs(early) == [1, 2, 3, 4, 5]
    assert seqs(late) == [3, 4, 1, 2, 5]


def test_resubscribe_after_a_skipped_notice_gets_exactly_the_skipped_seqs(
    loop: uvloop.Loop,
) -> None:
    core = FanoutCore(loop, wake=Wakeups(), client_budget=1000, slow_consumer="skip")
    slow = MemorySink()
    client = core.add_client(slow)
    core.subscribe(client, "a")
    core.publish({"n": 1}, "a")
    core.tick()
    slow.backlog = 5000  # its transport now holds more than the budget
    core.publish({"n": 2}, "a")
    core.tick()  # written (it was not known to be behind), then skipping starts
    for n in (3, 4, 5):
        core.publish({"n": n}, "a")
        core.tick()
    slow.backlog = 0  # drained
    core.publish({"n": 6}, "a")
    core.tick()
    notice = received(slow)[2]
    assert notice["ranges"] == [{"agent_id": "a", "from_seq": 3, "to_seq": 5}]
    core.subscribe(client, "a", since=notice["ranges"][0]["from_seq"] - 1)  # as it says
    core.publish({"n": 7}, "a")
    core.tick()
    assert seqs(slow) == [1, 2, "skipped", 6, 3, 4, 5, 7]


def test_resubscribe_with_since_through_a_socket_repeats_nothing() -> None:
    server = AgentServer(port=0)

    def agent_says(*messages: str) -> None:
        with server.interface.serving("agent-a"):
            for message in messages:
                server.interface.assistant_message(message)

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{server.port}", 1) as (client,):

            async def next_message() -> dict:
                return orjson.loads(await asyncio.wait_for(client.recv(), 10))

            await client.send(protocol.subscribe("agent-a").decode())
            assert (await next_message())["type"] == "command_response"
            agent_says("one", "two", "three")
            assert [(await next_message())["seq"] for _ in range(3)] == [1, 2, 3]
            await client.send(protocol.subscribe("agent-a", since=1).decode())
            assert (await next_message())["type"] == "command_response"
            agent_says("four")
            assert await next_message() == {
                "type": "agent_response",
                "message_type": "assistant_message",
                "message": "four",
                "agent_id": "agent-a",
                "seq": 4,
            }

    with server:
        run(scenario())
