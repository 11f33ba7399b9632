"""The producer API: runs, messages and tool calls as events, checked where they are made."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import pytest
import websockets

from agentcast import Broadcaster
from agentcast.streams.events import BadEvent, check_event
from agentcast.streams.producer import Run
from clients import run as run_loop
from stream_checks import NATIVE, check_stream, read_until, subscribe, subscribing_hub, text


class Recorder:
    """An ``emit`` that keeps what it is given, checked as the hub checks it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], channel: Hashable) -> None:
        assert channel == "a"
        self.events.append(check_event(dict(event)))

    @property
    def kinds(self) -> list[str]:
        return [e["type"] for e in self.events]


def test_a_run_that_raises_ends_with_run_error_and_the_error_goes_on() -> None:
    emit = Recorder()
    with pytest.raises(KeyError), Run(emit, "a", run_id="r") as run, run.message() as message:
        message.delta("half a thought")
        raise KeyError("the model went away")
    assert emit.kinds == ["run_start", "message_start", "message_delta", "message_end", "run_error"]
    assert emit.events[-1] == {
        "type": "run_error",
        "run_id": "r",
        "message": "KeyError: 'the model went away'",
    }


def test_what_does_not_fit_the_model_is_refused_before_it_is_queued() -> None:
    emit = Recorder()
    with Run(emit, "a") as run:
        message = run.message()
        message.end()
        with pytest.raises(BadEvent, match="has ended"):
            message.delta("late")
        with pytest.raises(BadEvent, match="a delta is a str"):
            run.tool_call("search").delta(42)  # type: ignore[arg-type]
        with pytest.raises(BadEvent, match="kind must be one of"):
            run.message(kind="poetry")
        with pytest.raises(BadEvent, match="RFC 6902"):
            run.state_patch([{"path": "/x"}])
    with pytest.raises(BadEvent, match="has ended"):
        run.custom("after")
    with pytest.raises(ValueError, match="needs a channel"):
        Run(emit, None)
    assert emit.kinds[-1] == "run_end"


def test_steps_state_and_results_are_events_of_the_run() -> None:
    emit = Recorder()
    with Run(emit, "a", run_id="r", thread_id="t") as run:
        with run.step("plan"):
            run.state_snapshot({"todo": []})
            run.state_patch([{"op": "add", "path": "/todo/-", "value": "look"}])
        call = run.tool_call("look", parent_message_id=run.say("looking"))
        call.end()
        run.tool_result(call.id, "found")
        run.custom("progress", 0.5)
    assert emit.kinds == [
        "run_start", "step_start", "state_snapshot", "state_patch", "step_end", "message",
        "tool_call_start", "tool_call_end", "tool_result", "custom", "run_end",
    ]  # fmt: skip
    assert emit.events[0] == {"type": "run_start", "run_id": "r", "thread_id": "t"}


def test_a_run_names_the_prompt_it_answers_in_its_start() -> None:
    emit = Recorder()
    with Run(emit, "a", run_id="r", prompt="what is new?"):
        pass
    assert emit.events[0] == {"type": "run_start", "run_id": "r", "prompt": "what is new?"}


def test_async_with_from_an_event_loop_streams_to_a_watcher(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = subscribing_hub(hub_factory)

    async def agent() -> None:
        async with hub.run("a") as run, run.message() as message:
            for word in ("one ", "two ", "three"):
                message.delta(word)

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{hub.port}/{NATIVE}") as watcher:
            await subscribe(watcher, "a")
            await agent()
            return await read_until(watcher, "run_end")

    events = run_loop(scenario())
    check_stream(events)
    message_id = next(e["message_id"] for e in events if e["type"] == "message_start")
    assert text(events, message_id) == "one two three"


def test_values_that_are_not_json_and_channels_no_frame_can_name_are_refused() -> None:
    emit = Recorder()
    with Run(emit, "a") as run:
        with pytest.raises(BadEvent, match="not JSON-serializable"):
            run.custom("progress", object())
        with pytest.raises(BadEvent, match="not JSON-serializable"):
            run.state_snapshot({"when": {1, 2}})
    with pytest.raises(BadEvent, match="a str or an int, not tuple"):
        Run(emit, ("a", 1))
    assert emit.kinds == ["run_start", "run_end"]
