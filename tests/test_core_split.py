"""The core after its split: it frames the notices agentcast.notices builds, and its loop-only
methods refuse other threads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path

import orjson
import pytest
import uvloop

from agentcast import notices
from agentcast._ext import FanoutCore, MemorySink
from agentcast.serve.loop import LoopThread
from clients import drain, parse_frames
from reference import frame


def _no_wake(callback: object) -> None:
    """The tests drive ``tick`` themselves."""


def payloads(sink: MemorySink) -> list[bytes]:
    assert sink.data is not None
    return [payload for _, payload in parse_frames(bytes(sink.data))]


def _stamped(seq: int) -> tuple[int, bytes]:
    return seq, orjson.dumps({"n": seq, "seq": seq})


def recording_notices() -> tuple[notices.Notices, list[tuple[object, ...]]]:
    """Builders that record their arguments and return recognizable bytes."""
    calls: list[tuple[object, ...]] = []

    def history_gap(agent_id: Hashable, since: int, first: int, last: int) -> bytes:
        calls.append(("history_gap", agent_id, since, first, last))
        return b'{"notice":"history_gap"}'

    def backplane_gap(agent_id: Hashable, from_seq: int, to_seq: int) -> bytes:
        calls.append(("backplane_gap", agent_id, from_seq, to_seq))
        return b'{"notice":"backplane_gap"}'

    def restarted(agent_id: Hashable, last_seq: int) -> bytes:
        calls.append(("restarted", agent_id, last_seq))
        return b'{"notice":"restarted"}'

    def skipped(count: int, ranges: Sequence[tuple[Hashable, int, int]]) -> bytes:
        calls.append(("skipped", count, list(ranges)))
        return b'{"notice":"skipped"}'

    return notices.Notices(history_gap, backplane_gap, restarted, skipped), calls


def test_the_core_frames_the_notices_it_is_handed(loop: uvloop.Loop) -> None:
    notices, calls = recording_notices()
    core = FanoutCore(
        loop,
        wake=_no_wake,
        history_size=2,
        client_budget=1000,
        slow_consumer="skip",
        notices=notices,
    )
    sink = MemorySink()
    client = core.add_client(sink)
    core.subscribe(client, "c")
    core.accept("c", [_stamped(1), _stamped(2)])
    core.accept("c", [_stamped(5)])  # 3 and 4 never came
    core.renumber("c")
    core.subscribe(client, "d")
    for n in range(4):
        core.publish({"n": n}, "d")  # history keeps the last 2: seqs 3, 4
    drain(core)
    late = MemorySink()
    core.subscribe(core.add_client(late), "d", since=0)  # 1 and 2 are gone
    drain(core)
    sink.backlog = 5000
    core.publish({"n": 4}, "d")  # written, then the client is known to be behind
    drain(core)
    core.publish({"n": 5}, "d")  # skipped
    drain(core)
    sink.backlog = 0
    core.publish({"n": 6}, "d")
    drain(core)

    assert calls == [
        ("backplane_gap", "c", 3, 4),
        ("restarted", "c", 5),
        ("history_gap", "d", 0, 3, 4),
        ("skipped", 1, [("d", 6, 6)]),
    ]
    notice_frames = [p for p in payloads(sink) + payloads(late) if p.startswith(b'{"notice"')]
    assert sorted(orjson.loads(p)["notice"] for p in notice_frames) == [
        "backplane_gap",
        "history_gap",
        "restarted",
        "skipped",
    ]


def test_by_default_the_core_sends_protocol_py_notices(loop: uvloop.Loop) -> None:
    core = FanoutCore(loop, wake=_no_wake, history_size=2)
    for n in range(4):
        core.publish({"n": n}, "d")
    drain(core)
    late = MemorySink()
    core.subscribe(core.add_client(late), "d", since=0)
    drain(core)
    assert late.data is not None
    assert bytes(late.data).startswith(frame(notices.resume_gap("d", 0, 3, 4)))


@pytest.fixture
def core_on_loop() -> Iterator[tuple[FanoutCore, LoopThread]]:
    """A core created on a running loop thread, as ``Broadcaster`` creates it."""
    thread = LoopThread()

    async def setup() -> FanoutCore:
        return FanoutCore(asyncio.get_running_loop())

    core = thread.start(setup)
    yield core, thread

    async def shutdown() -> None:
        core.close_all(1001, "bye")

    thread.stop(shutdown, 5.0)


LOOP_ONLY: list[tuple[str, tuple[object, ...]]] = [
    ("tick", ()),
    ("flush", ()),
    ("add_client", (MemorySink(),)),
    ("remove_client", (1,)),
    ("close_client", (1, 1000, "bye")),
    ("close_all", (1001, "bye")),
    ("abort_all", ()),
    ("subscriber_count", ("c",)),
    ("client_ids", ()),
]


@pytest.mark.parametrize(("method", "args"), LOOP_ONLY, ids=[name for name, _ in LOOP_ONLY])
def test_loop_only_methods_refuse_another_thread(
    core_on_loop: tuple[FanoutCore, LoopThread], method: str, args: tuple[object, ...]
) -> None:
    core, thread = core_on_loop
    sink = MemorySink()
    client = thread.call(core.add_client, sink)
    with pytest.raises(RuntimeError, match=rf"FanoutCore\.{method} called from a wrong thread"):
        getattr(core, method)(*args)
    # Refused before touching anything: the client is still there and open.
    assert thread.call(core.client_ids) == [client]
    assert (sink.close_code, sink.aborted) == (0, False)


def test_any_thread_methods_still_work_beside_the_loop(
    core_on_loop: tuple[FanoutCore, LoopThread],
) -> None:
    core, thread = core_on_loop
    sink = MemorySink()
    client = thread.call(core.add_client, sink)
    core.subscribe(client, "c")
    core.publish({"n": 1}, "c")
    core.send(client, {"n": 2})
    thread.call(core.flush)
    assert [orjson.loads(p)["n"] for p in payloads(sink)] == [1, 2]
    assert core.stats()["deliveries"] == 2 and core.client_count == 1
    assert core.channel_info("c") == thread.call(core.channel_info, "c")
    assert thread.call(core.subscriber_count, "c") == 1


EXT = Path(__file__).resolve().parents[1] / "ext"


def test_setup_py_alone_sets_the_checking_directives() -> None:
    """A file's ``# cython:`` header overrides setup.py's ``compiler_directives``, so a
    header turning bounds checks off would defeat ``AGENTCAST_DEBUG=1``."""
    sources = sorted(EXT.rglob("*.p[xy][xd]"))
    assert sources
    for path in sources:
        header = [line for line in path.read_text().splitlines() if line.startswith("# cython:")]
        for line in header:
            for directive in ("boundscheck", "wraparound", "cdivision"):
                assert directive not in line, f"{path.name}: {line}"


class WakeFailsOnce:
    """Stands in for ``call_soon_threadsafe`` of a loop that is closed the first time."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], object]] = []
        self.failed = False

    def __call__(self, callback: Callable[[], object]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("Event loop is closed")
        self.callbacks.append(callback)


def test_a_failed_wake_is_raised_and_not_left_pending(loop: uvloop.Loop) -> None:
    wake = WakeFailsOnce()
    core = FanoutCore(loop, wake=wake)
    sink = MemorySink()
    core.add_client(sink)
    with pytest.raises(RuntimeError, match="closed"):
        core.publish({"n": 1})
    core.publish({"n": 2})  # asks for a wake-up again: the failed one is not pending
    assert len(wake.callbacks) == 1
    wake.callbacks[0]()
    assert [orjson.loads(p)["n"] for p in payloads(sink)] == [1, 2]
    assert core.stats()["wakeups"] == 1


def test_a_core_whose_loop_closed_keeps_saying_so() -> None:
    loop = uvloop.new_event_loop()
    core = FanoutCore(loop)
    loop.close()
    for n in range(2):
        with pytest.raises(RuntimeError, match="closed"):
            core.publish({"n": n})
