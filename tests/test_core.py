"""The Cython hub against the pure-Python oracle, with in-memory sinks (no sockets)."""

from __future__ import annotations

import gc
import random
import sys

import orjson
import pytest
import uvloop

from agentcast._ext import CallbackSink, FanoutCore, MemorySink, build_frame
from clients import drain, parse_frames
from reference import ReferenceFanout, TickedReference, frame


class Wakeups:
    """Counts the core's requests to be woken; the test drives ``tick`` itself."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, callback: object) -> None:
        self.count += 1


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
def test_frame_header_lengths(size: int) -> None:
    payload = b"x" * size
    assert build_frame(payload) == frame(payload)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_batch_bytes", [64, 4096, 1 << 20])
@pytest.mark.parametrize("history_size", [1000, 5])
def test_matches_reference_fanout(
    loop: uvloop.Loop, seed: int, max_batch_bytes: int, history_size: int
) -> None:
    rng = random.Random(seed)
    core = FanoutCore(
        loop,
        wake=Wakeups(),
        max_batch_bytes=max_batch_bytes,
        history_size=history_size,
        history_bytes=1 << 30,
    )
    sinks = {}
    for _ in range(12):
        sink = MemorySink()
        sinks[core.add_client(sink)] = sink
    ids = list(sinks)
    oracle = ReferenceFanout(ids, history_size)
    channels = ["a", "b", "c", 7]
    for step in range(600):
        roll = rng.random()
        payload = orjson.dumps({"step": step, "pad": "p" * rng.choice([0, 10, 200, 70000])})
        if roll < 0.35:
            channel = rng.choice([*channels, None])
            core.publish_json(payload, channel)
            oracle.publish(payload, channel)
        elif roll < 0.5:
            cid = rng.choice(ids)
            core.send_json(cid, payload)
            oracle.send(cid, payload)
        elif roll < 0.7:
            cid, channel = rng.choice(ids), rng.choice(channels)
            core.subscribe(cid, channel)
            oracle.subscribe(cid, channel)
        elif roll < 0.8:
            cid, channel = rng.choice(ids), rng.choice(channels)
            core.unsubscribe(cid, channel)
            oracle.unsubscribe(cid, channel)
        elif roll < 0.85:
            cid, channel = rng.choice(ids), rng.choice(channels)
            since = rng.randrange(0, oracle.last_seq.get(channel, 0) + 3)
            core.subscribe(cid, channel, since=since)
            oracle.resume(cid, channel, since)
        else:
            core.tick()
    drain(core)
    for cid, sink in sinks.items():
        assert bytes(sink.data) == bytes(oracle.streams[cid]), f"client {cid}"
    assert core.stats()["deliveries"] == sum(len(_frames(oracle.streams[cid])) for cid in ids)


def _frames(stream: bytearray | None) -> list[bytes]:
    assert stream is not None
    return [payload for _, payload in parse_frames(bytes(stream))]


def test_publishes_between_ticks_cause_one_wakeup(loop: uvloop.Loop) -> None:
    wakeups = Wakeups()
    core = FanoutCore(loop, wake=wakeups)
    sink = MemorySink(keep=False)
    core.add_client(sink)
    for i in range(10_000):
        core.publish({"i": i})
    assert wakeups.count == 1
    drain(core)
    core.publish({"after": True})
    assert wakeups.count == 2
    drain(core)
    assert core.stats()["deliveries"] == 10_001


def test_queue_keeps_order_when_it_grows_while_wrapped(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups(), max_batch_bytes=1)  # one message per tick
    sink = MemorySink()
    core.add_client(sink)
    for i in range(50):
        core.publish({"i": i})
    for _ in range(40):  # the oldest 10 now sit in the middle of the ring
        core.tick()
    for i in range(50, 300):  # wraps past the end, then grows twice
        core.publish({"i": i})
    drain(core)
    assert [orjson.loads(p)["i"] for _, p in parse_frames(bytes(sink.data))] == list(range(300))


def test_queued_payloads_are_released_once_written_or_dropped(loop: uvloop.Loop) -> None:
    payload = orjson.dumps({"unique": random.random()})
    channel = f"agent-{random.random()}"
    held = sys.getrefcount(payload), sys.getrefcount(channel)
    core = FanoutCore(loop, wake=Wakeups())
    core.add_client(MemorySink(keep=False))
    for _ in range(1000):
        core.publish_json(payload)
        core.publish_json(payload, channel)
    drain(core)
    kept = 2  # the channel's state: its key in the core's table, and its name
    assert (sys.getrefcount(payload), sys.getrefcount(channel)) == (held[0], held[1] + kept)
    for _ in range(1000):  # never taken by a tick: the core's end releases them
        core.publish_json(payload, channel)
    del core
    gc.collect()  # the core holds its own bound tick: a cycle
    assert (sys.getrefcount(payload), sys.getrefcount(channel)) == held


def test_lone_message_is_written_in_its_own_tick(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    sink = MemorySink()
    core.add_client(sink)
    core.publish({"hello": 1})
    core.tick()
    assert bytes(sink.data) == frame(b'{"hello":1}')
    assert sink.writes == 1


def test_one_write_per_client_per_tick(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    sinks = [MemorySink(keep=False) for _ in range(50)]
    for sink in sinks:
        core.add_client(sink)
    for i in range(64):
        core.publish({"i": i})
    core.tick()
    assert {sink.writes for sink in sinks} == {1}
    assert core.stats()["deliveries"] == 50 * 64


def test_client_over_budget_is_closed_with_1013_others_unaffected(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups(), client_budget=1000)
    stalled, healthy = MemorySink(), MemorySink()
    stalled.backlog = 1001
    stalled_id = core.add_client(stalled)
    core.add_client(healthy)
    for i in range(10):
        core.publish({"i": i})
    drain(core)
    core.publish({"i": 10})
    drain(core)
    assert stalled.close_code == 1013
    assert "budget" in stalled.close_reason
    assert stalled.writes == 1
    assert len(_frames(healthy.data)) == 11
    assert core.stats()["dropped_clients"] == 1
    core.remove_client(stalled_id)
    assert core.client_count == 1


def test_serializes_once_whatever_the_client_count(loop: uvloop.Loop) -> None:
    calls = []

    class Opaque:
        pass

    def default(obj: object) -> str:
        calls.append(obj)
        return "opaque"

    core = FanoutCore(loop, wake=Wakeups(), default=default)
    for _ in range(500):
        core.add_client(MemorySink(keep=False))
    core.publish({"x": Opaque()})
    drain(core)
    assert len(calls) == 1
    assert core.stats()["deliveries"] == 500


def test_unknown_targets_are_counted_not_raised(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    core.send(12345, {"x": 1})
    core.subscribe(12345, "a")
    drain(core)
    assert core.stats()["unknown_targets"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"client_budget": 0}, "client_budget"),
        ({"max_batch_bytes": 0}, "max_batch_bytes"),
        ({"flush_interval": -1.0}, "flush_interval"),
    ],
)
def test_bad_settings_are_refused(loop: uvloop.Loop, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FanoutCore(loop, **kwargs)


def test_bad_arguments_are_refused(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    with pytest.raises(TypeError):
        core.publish_json("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        core.subscribe(1, None)
    with pytest.raises(TypeError):
        core.subscribe(1, ["unhashable"])
    with pytest.raises(TypeError):
        core.publish({"x": object()})
    assert core.pending == 0


def test_a_failing_sink_is_dropped_not_the_round(
    loop: uvloop.Loop, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(data: bytes) -> None:
        raise OSError("sink broke")

    aborted = []
    broken = CallbackSink(explode, lambda: 0, lambda code, reason: None, lambda: aborted.append(1))
    core = FanoutCore(loop, wake=Wakeups())
    before, after = MemorySink(), MemorySink()
    core.add_client(before)
    core.add_client(broken)
    core.add_client(after)
    core.publish({"x": 1})
    core.publish({"x": 2})
    drain(core)
    assert bytes(before.data) == bytes(after.data) == frame(b'{"x":1}') + frame(b'{"x":2}')
    assert aborted == [1]
    assert core.stats()["write_errors"] == 1
    assert "sink failed" in caplog.text


@pytest.mark.parametrize(
    ("payload", "stamped"),
    [
        (b'{"a":1}', b'{"a":1,"seq":1}'),
        (b"{}", b'{"seq":1}'),
        (b"[1,2]", b"[1,2]"),
        (b'"text"', b'"text"'),
    ],
)
def test_channel_messages_carry_seq(loop: uvloop.Loop, payload: bytes, stamped: bytes) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    sink = MemorySink()
    core.subscribe(core.add_client(sink), "c")
    core.publish_json(payload, "c")
    core.publish_json(payload)  # broadcasts carry no seq
    drain(core)
    assert bytes(sink.data) == frame(stamped) + frame(payload)


def test_history_is_bounded_by_count_and_bytes(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups(), history_size=100, history_bytes=1000)
    for i in range(500):
        core.publish({"i": i, "pad": "x" * 80}, "c")
    drain(core)
    info = core.channel_info("c")
    assert info is not None
    assert info["last_seq"] == 500
    assert info["bytes"] <= 1000 and info["frames"] == 500 - info["first_seq"] + 1
    assert core.channel_info("never") is None


def test_skip_policy_drops_while_behind_then_names_the_gap(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups(), client_budget=1000, slow_consumer="skip")
    slow, healthy = MemorySink(), MemorySink()
    slow_id = core.add_client(slow)
    core.subscribe(slow_id, "a")
    core.subscribe(core.add_client(healthy), "a")
    core.publish({"n": 1}, "a")
    drain(core)
    slow.backlog = 5000  # its transport now holds more than the budget
    core.publish({"n": 2}, "a")
    drain(core)  # written (it was not known to be behind), then skipping starts
    for n in (3, 4, 5):
        core.publish({"n": n}, "a")
        drain(core)
    slow.backlog = 0  # drained
    core.publish({"n": 6}, "a")
    drain(core)
    frames = [orjson.loads(f) for f in _frames(slow.data)]
    assert [f.get("n") for f in frames] == [1, 2, None, 6]
    notice = frames[2]
    assert notice["code"] == "skipped" and notice["skipped"] == 3
    assert notice["ranges"] == [{"agent_id": "a", "from_seq": 3, "to_seq": 5}]
    assert slow.close_code == 0
    assert [orjson.loads(f)["n"] for f in _frames(healthy.data)] == [1, 2, 3, 4, 5, 6]
    stats = core.stats()
    assert (stats["skip_episodes"], stats["skipped_frames"], stats["dropped_clients"]) == (1, 3, 0)


def test_close_all_aborts_clients_over_budget(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups(), client_budget=1000)
    behind, fine = MemorySink(), MemorySink()
    core.add_client(behind)
    core.add_client(fine)
    behind.backlog = 1001
    core.close_all(1001, "bye")
    assert behind.aborted and behind.close_code == 0
    assert not fine.aborted and (fine.close_code, fine.close_reason) == (1001, "bye")


def _stamped(seq: int) -> tuple[int, bytes]:
    """A frame as a backplane numbers it: the seq is already in the JSON."""
    return seq, orjson.dumps({"n": seq, "seq": seq})


def test_accepted_frames_are_kept_deduplicated_and_gaps_announced(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups(), history_size=100)
    sink = MemorySink()
    client = core.add_client(sink)
    core.subscribe(client, "c")
    core.accept("c", [_stamped(5), _stamped(6)])  # a late joiner: the channel starts at 5
    core.accept("c", [_stamped(6), _stamped(7)])  # 6 again: dropped
    core.accept("c", [_stamped(10)])  # 8 and 9 never came
    drain(core)
    received = [orjson.loads(f) for f in _frames(sink.data)]
    assert [m.get("seq") for m in received] == [5, 6, 7, None, 10]
    gap = received[3]
    assert gap["code"] == "backplane_gap" and (gap["from_seq"], gap["to_seq"]) == (8, 9)
    assert core.stats()["duplicates"] == 1 and core.stats()["gaps"] == 1
    kept = len(frame(_stamped(10)[1]))
    assert core.channel_info("c") == {"last_seq": 10, "first_seq": 10, "frames": 1, "bytes": kept}

    late = MemorySink()
    core.subscribe(core.add_client(late), "c", since=9)  # resume from the accepted history
    drain(core)
    assert [orjson.loads(f)["seq"] for f in _frames(late.data)] == [10]


def test_renumber_forgets_history_and_tells_subscribers(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    sink = MemorySink()
    core.subscribe(core.add_client(sink), "c")
    core.accept("c", [_stamped(1), _stamped(2)])
    core.renumber("c")
    core.accept("c", [_stamped(1)])  # numbering starts again: not a duplicate
    drain(core)
    received = [orjson.loads(f) for f in _frames(sink.data)]
    assert [m.get("seq") for m in received] == [1, 2, None, 1]
    assert received[2]["code"] == "channel_restarted" and received[2]["from_seq"] == 3
    assert core.channel_info("c")["last_seq"] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    "frames", [[(0, b"{}")], [(1, "text")], [(1,)], ["x"]], ids=["seq0", "str", "short", "str-item"]
)
def test_accept_refuses_bad_frames_in_the_callers_thread(loop: uvloop.Loop, frames: list) -> None:
    core = FanoutCore(loop, wake=Wakeups())
    with pytest.raises((ValueError, TypeError)):
        core.accept("c", frames)
    assert core.pending == 0


def test_sinks_that_queue_a_round_share_one_bytes_object_per_buffer(loop: uvloop.Loop) -> None:
    """Sinks without a socket for the shared send(2) (TLS transports, foreign connections)
    are handed one bytes object per buffer and round, not a copy each: the per-client copy
    made agentcast cost 1.14-1.26x pyfanout per delivery over TLS."""
    received: dict[int, list[bytes]] = {}

    core = FanoutCore(loop, wake=Wakeups())
    for _ in range(6):
        writes: list[bytes] = []
        sink = CallbackSink(writes.append, lambda: 0, lambda code, reason: None, lambda: None)
        received[core.add_client(sink)] = writes
    ids = list(received)
    for client_id in ids[3:]:
        core.subscribe(client_id, "agent")
    core.send(ids[5], {"only": 5})  # its own buffer this round
    core.publish({"to": "all"})
    core.publish({"to": "agent"}, "agent")
    drain(core)
    broadcast_only = [received[i][0] for i in ids[:3]]
    with_agent = [received[i][0] for i in ids[3:5]]
    assert all(data is broadcast_only[0] for data in broadcast_only)
    assert all(data is with_agent[0] for data in with_agent)
    assert broadcast_only[0] == frame(b'{"to":"all"}')
    assert parse_frames(with_agent[0])[1][1].startswith(b'{"to":"agent"')
    assert received[ids[5]][0] is not with_agent[0]
    assert [len(writes) for writes in received.values()] == [1] * 6


def _normalized(stream: bytes | bytearray) -> list[object]:
    """Frames as JSON; a skipped notice's ranges sorted (the core lists them in its set's order)."""
    frames = [orjson.loads(payload) for _, payload in parse_frames(bytes(stream))]
    for notice in frames:
        if notice.get("code") == "skipped":
            notice["ranges"].sort(key=lambda r: repr(r["agent_id"]))
    return frames


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("slow_consumer", ["skip", "close"])
def test_matches_the_ticked_oracle(loop: uvloop.Loop, seed: int, slow_consumer: str) -> None:
    """Slow clients (skip or close, direct frames included), the channel cap with LRU
    eviction, sweeps, byte-bounded history and backplane frames (accept, renumber, forget),
    tick by tick against the oracle."""
    rng = random.Random(seed)
    budget = 3000
    bounds = {
        "history_size": rng.choice([5, 1000]),
        "history_bytes": rng.choice([600, 1 << 30]),
        "max_channels": rng.choice([3, 5, 1000]),
    }
    core = FanoutCore(
        loop,
        wake=Wakeups(),
        max_batch_bytes=1 << 40,  # a tick applies everything queued, as the oracle's does
        client_budget=budget,
        slow_consumer=slow_consumer,
        history_total_bytes=1 << 40,
        channel_ttl=10.0,
        **bounds,
    )
    sinks = {}
    for _ in range(8):
        sink = MemorySink()
        sinks[core.add_client(sink)] = sink
    ids = list(sinks)
    oracle = TickedReference(
        ids, **bounds, budget=budget, skip=slow_consumer == "skip", channel_ttl=10.0
    )
    channels: list[object] = ["a", "b", "c", "d", 7, "bp"]
    bp_seq, now = 0, 0.0
    for step in range(800):
        roll = rng.random()
        payload = orjson.dumps({"step": step, "pad": "p" * rng.choice([0, 10, 200])})
        cid, channel = rng.choice(ids), rng.choice(channels)
        ack = rng.choice([None, b'{"ack":%d}' % step])
        if roll < 0.3:
            target = rng.choice([*channels[:-1], None])
            core.publish_json(payload, target)
            oracle.publish(payload, target)
        elif roll < 0.4:
            core.send_json(cid, payload)
            oracle.send(cid, payload)
        elif roll < 0.5:
            core.subscribe(cid, channel, ack=ack)
            oracle.subscribe(cid, channel, ack)
        elif roll < 0.65:
            core.unsubscribe(cid, channel)
            oracle.unsubscribe(cid, channel)
        elif roll < 0.7:
            since = rng.randrange(0, oracle.last_seq.get(channel, 0) + 3)
            core.subscribe(cid, channel, since=since, ack=ack)
            oracle.resume(cid, channel, since, ack)
        elif roll < 0.76:  # a backplane's frames: in order, repeated, or after a gap
            bp_seq = max(1, bp_seq + rng.choice([-2, 0, 1, 1, 1, 3]))
            frames = [(seq, orjson.dumps({"n": seq, "seq": seq})) for seq in (bp_seq, bp_seq + 1)]
            bp_seq += 1
            core.accept("bp", frames)
            oracle.accept("bp", frames)
        elif roll < 0.77:
            core.renumber(channel)
            oracle.renumber(channel)
        elif roll < 0.78:
            core.forget(channel)
            oracle.forget(channel)
        elif roll < 0.82:
            now += rng.choice([1.0, 6.0, 11.0])
            limit = rng.choice([1, 3, 100])
            assert core.sweep_idle(now, limit) == oracle.sweep(now, limit), f"step {step}"
        elif roll < 0.88:
            sinks[cid].backlog = rng.choice([0, 0, 0, budget // 2 + 1, 2 * budget])
        else:
            core.tick()
            oracle.tick({c: s.backlog for c, s in sinks.items()})
    core.tick()
    oracle.tick({c: s.backlog for c, s in sinks.items()})
    for cid, sink in sinks.items():
        assert _normalized(sink.data) == _normalized(oracle.streams[cid]), f"client {cid}"
    stats = core.stats()
    counted = ("skipped_frames", "skip_episodes", "dropped_clients", "duplicates")
    counted += ("evicted_channels", "refused_channels", "freed_channels")
    assert {key: stats[key] for key in counted} == {key: oracle.counts[key] for key in counted}
    assert stats["channels"] == len(oracle.records)
