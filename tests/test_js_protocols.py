"""agentcast's SSE streams judged by the field's own clients (tests/js, pinned: @ag-ui/client
1.0.0, ai 6.0.333): they accept each stream, joining mid-run included, and what they
assemble is what the producer sent."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from agentcast import Broadcaster
from agentcast.streams.producer import MessageStream, Run
from clients import run, wait_for
from js_clients import ClientResult

Client = Callable[..., ClientResult]

REASONING = ["Let me ", "look ", "that up."]
ARGUMENTS = ['{"query":', ' "weather', ' in Paris"}']
ANSWER = ["It is ", "sunny ", "in Paris", "."]
STATE = {"city": "Paris", "steps": 1}
PATCH = [{"op": "replace", "path": "/steps", "value": 2}]


def in_background(client: Client, *args: str) -> tuple[ThreadPoolExecutor, Future[ClientResult]]:
    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(client, *args)


def watching(hub: Broadcaster, count: int = 1) -> None:
    """Wait until ``count`` SSE clients are subscribed."""
    run(
        wait_for(
            lambda: (
                hub.stats().get("sse_streams") == count
                and hub.stats().get("subscriptions") == count
            ),
            timeout=20,
            what="the JS client's subscription",
        )
    )


def produce(
    agent_run: Run, answer: MessageStream | None = None, pieces: list[str] = ANSWER
) -> dict[str, str]:
    """The rest of a run (from its tool call on): a tool call with streamed arguments and
    its result, state, and the answer's ``pieces`` (in ``answer`` if it is started); ids."""
    with agent_run.tool_call("get_weather") as call:
        for piece in ARGUMENTS:
            call.delta(piece)
    agent_run.tool_result(call.id, "sunny, 24 C")
    agent_run.state_snapshot(STATE)
    agent_run.state_patch(PATCH)
    answer = answer or agent_run.message(role="assistant")
    with answer:
        for piece in pieces:
            answer.delta(piece)
    return {"call": call.id, "answer": answer.id}


def whole_run(hub: Broadcaster, channel: str) -> dict[str, str]:
    with hub.run(channel) as agent_run:
        with agent_run.message(role="assistant", kind="reasoning") as thinking:
            for piece in REASONING:
                thinking.delta(piece)
        ids = produce(agent_run)
    return {**ids, "reasoning": thinking.id, "run": agent_run.id}


def by_id(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {message["id"]: message for message in messages}


def check_agui(result: ClientResult, ids: dict[str, str], reasoning: bool = True) -> None:
    assert result.code == 0, result
    assert result.output["error"] is None
    assert result.output["warnings"] == []  # nothing stripped: every field is AG-UI's own
    events = result.output["events"]
    assert events[0] == "RUN_STARTED" and events[-1] == "RUN_FINISHED"
    messages = by_id(result.output["messages"])
    assert messages[ids["answer"]]["content"] == "".join(ANSWER)
    assert messages[ids["answer"]]["role"] == "assistant"
    if reasoning:
        assert messages[ids["reasoning"]]["content"] == "".join(REASONING)
    calls = [call for m in messages.values() for call in (m.get("toolCalls") or [])]
    assert [(c["id"], c["function"]["name"]) for c in calls] == [(ids["call"], "get_weather")]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"query": "weather in Paris"}
    results = [m for m in messages.values() if m["role"] == "tool"]
    assert [(m["toolCallId"], m["content"]) for m in results] == [(ids["call"], "sunny, 24 C")]
    assert result.output["state"] == {"city": "Paris", "steps": 2}


def test_ag_ui_client_accepts_a_whole_run(hub: Broadcaster, js_client: Client) -> None:
    pool, future = in_background(js_client, "agui_watch.mjs", f"{url(hub)}/sse/a?protocol=agui")
    with pool:
        watching(hub)
        ids = whole_run(hub, "a")
        check_agui(future.result(), ids)


def test_ag_ui_client_joining_mid_run_gets_a_valid_stream(
    hub: Broadcaster, js_client: Client
) -> None:
    with hub.run("a") as agent_run:
        with agent_run.message(role="assistant", kind="reasoning") as thinking:
            for piece in REASONING:
                thinking.delta(piece)
        answer = agent_run.message(role="assistant")
        for piece in ANSWER[:2]:
            answer.delta(piece)
        pool, future = in_background(js_client, "agui_watch.mjs", f"{url(hub)}/sse/a?protocol=agui")
        with pool:
            watching(hub)
            ids = produce(agent_run, answer, ANSWER[2:])
            agent_run.end()
            result = future.result()
    check_agui(result, {**ids, "reasoning": thinking.id})


def test_ag_ui_client_resuming_inside_a_run_gets_it_from_its_start(
    hub: Broadcaster, js_client: Client
) -> None:
    with hub.run("a") as agent_run:
        with agent_run.message(role="assistant", kind="reasoning") as thinking:
            for piece in REASONING:
                thinking.delta(piece)
        run(wait_for(lambda: (hub.channel_info("a") or {}).get("last_seq") == 6))
        pool, future = in_background(
            js_client, "agui_watch.mjs", f"{url(hub)}/sse/a?protocol=agui", "--last-event-id", "4"
        )
        with pool:
            watching(hub)
            ids = produce(agent_run)
            agent_run.end()
            result = future.result()
    check_agui(result, {**ids, "reasoning": thinking.id})


def test_ai_sdk_reader_assembles_a_whole_run(hub: Broadcaster, js_client: Client) -> None:
    pool, future = in_background(js_client, "aisdk_read.mjs", f"{url(hub)}/sse/a?protocol=aisdk")
    with pool:
        watching(hub)
        ids = whole_run(hub, "a")
        check_ai_sdk(future.result(), ids)


def check_ai_sdk(result: ClientResult, ids: dict[str, str]) -> None:
    assert result.code == 0, result
    assert result.output["error"] is None and result.output["done"] is True
    message = result.output["message"]
    assert message["id"] == ids["run"] and message["role"] == "assistant"
    parts = message["parts"]
    texts = {p["type"]: p["text"] for p in parts if p["type"] in ("text", "reasoning")}
    assert texts == {"reasoning": "".join(REASONING), "text": "".join(ANSWER)}
    tools = [p for p in parts if p["type"].startswith("tool-")]
    assert [(t["type"], t["toolCallId"], t["state"]) for t in tools] == [
        ("tool-get_weather", ids["call"], "output-available")
    ]
    assert tools[0]["input"] == {"query": "weather in Paris"}
    assert tools[0]["output"] == "sunny, 24 C"


def test_use_chat_resume_gets_204_without_an_open_run(hub: Broadcaster, js_client: Client) -> None:
    whole_run(hub, "chat-1")  # over: nothing to resume
    result = js_client("aisdk_resume.mjs", url(hub), "chat-1")
    assert result.code == 0, result
    assert result.output["status"] == "none"


@pytest.mark.parametrize("tabs", [1, 3])
def test_use_chat_resume_replays_the_open_run_from_its_first_chunk(
    hub: Broadcaster, js_client: Client, tabs: int
) -> None:
    """Several tabs at once resume the same run, each whole, from history: no producer-side
    buffer, no ack timeout."""
    with hub.run("chat-1") as agent_run:
        with agent_run.message(role="assistant", kind="reasoning") as thinking:
            for piece in REASONING:
                thinking.delta(piece)
        pool = ThreadPoolExecutor(tabs)
        with pool:
            futures = [
                pool.submit(js_client, "aisdk_resume.mjs", url(hub), "chat-1") for _ in range(tabs)
            ]
            watching(hub, tabs)
            ids = produce(agent_run)
            agent_run.end()
            results = [future.result() for future in futures]
    for result in results:
        assert result.output["status"] == "message"
        check_ai_sdk(result, {**ids, "reasoning": thinking.id, "run": agent_run.id})


def url(hub: Broadcaster) -> str:
    return f"http://127.0.0.1:{hub.port}"
