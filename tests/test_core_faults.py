"""The core under faults: bad operations, queued subscribes, closing sinks, resubscribes."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import orjson
import pytest
import uvloop

from agentcast._ext import FanoutCore, MemorySink
from agentcast.protocol import Notices
from clients import parse_frames


class Wakeups:
    """Stands in for the loop's wake-up: the test drives ``tick`` itself."""

    def __call__(self, callback: object) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[uvloop.Loop]:
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


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
