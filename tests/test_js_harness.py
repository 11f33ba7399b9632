"""The JS clients' harness checked on its own, against canned streams served by
``sse_fixture``: the clients accept and assemble a valid stream, and their own checks are
live (a stream breaking the protocol's rules is refused, naming the rule)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from js_clients import JS_DIR, ClientResult
from sse_fixture import Canned, serving, sse_stream

Client = Callable[..., ClientResult]

# ---- AG-UI (@ag-ui/client 1.0.0) ---------------------------------------------------

RUN = {"threadId": "thread-1", "runId": "run-1"}
TEXT = ["Hel", "lo ", "", "world"]  # an empty delta is valid
ARGS = ['{"q":', '"x"}']
INPUT = {"q": "x"}  # ARGS joined and parsed


def agui_run(run_id: str = "run-1", text: list[str] = TEXT) -> list[dict[str, Any]]:
    """A run with state, one streamed assistant message and one tool call with its result."""
    run = {**RUN, "runId": run_id}
    message = f"{run_id}:m1"
    return [
        {"type": "RUN_STARTED", **run},
        {"type": "STATE_SNAPSHOT", "snapshot": {"step": 0}},
        {"type": "TEXT_MESSAGE_START", "messageId": message, "role": "assistant"},
        *({"type": "TEXT_MESSAGE_CONTENT", "messageId": message, "delta": d} for d in text),
        {"type": "TEXT_MESSAGE_END", "messageId": message},
        {
            "type": "TOOL_CALL_START",
            "toolCallId": "c1",
            "toolCallName": "search",
            "parentMessageId": message,
        },
        *({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": d} for d in ARGS),
        {"type": "TOOL_CALL_END", "toolCallId": "c1"},
        {
            "type": "TOOL_CALL_RESULT",
            "messageId": "c1:result",
            "toolCallId": "c1",
            "content": "sunny",
            "role": "tool",
        },
        {"type": "STATE_DELTA", "delta": [{"op": "replace", "path": "/step", "value": 1}]},
        {"type": "RUN_FINISHED", **run},
    ]


def watch_agui(js_client: Client, body: bytes, *args: str, stays_open: bool = True) -> ClientResult:
    result, _ = watch_agui_requests(js_client, body, *args, stays_open=stays_open)
    return result


def watch_agui_requests(
    js_client: Client, body: bytes, *args: str, stays_open: bool = True
) -> tuple[ClientResult, list[str]]:
    """The watch's result and the request heads the server received."""
    with serving({"/sse/demo?protocol=agui": Canned(body, stays_open=stays_open)}) as server:
        result = js_client("agui_watch.mjs", f"{server.url}/sse/demo?protocol=agui", *args)
    return result, server.requests


def test_agui_client_accepts_and_assembles_a_valid_run(js_client: Client) -> None:
    events = agui_run()
    body = sse_stream(events[:4]) + b": ping\n\n" + sse_stream(events[4:])
    result = watch_agui(js_client, body)
    assert (result.code, result.output["error"]) == (0, None), result.stderr
    assert result.output["events"] == [event["type"] for event in events]
    message, tool_result = result.output["messages"]
    assert message["content"] == "".join(TEXT)
    assert message["toolCalls"] == [
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "".join(ARGS)}}
    ]
    assert tool_result == {
        "id": "c1:result",
        "role": "tool",
        "content": "sunny",
        "toolCallId": "c1",
    }
    assert result.output["state"] == {"step": 1}
    assert result.output["warnings"] == []


def test_agui_watch_is_a_get_that_can_carry_last_event_id(js_client: Client) -> None:
    result, (request,) = watch_agui_requests(
        js_client, sse_stream(agui_run()), "--last-event-id", "7"
    )
    assert result.code == 0, result.output["error"]
    assert request.startswith("GET /sse/demo?protocol=agui HTTP/1.1\r\n")
    assert "\r\naccept: text/event-stream\r\n" in request.lower()
    assert "\r\nlast-event-id: 7\r\n" in request.lower()


def test_agui_client_stops_after_the_runs_asked_for(js_client: Client) -> None:
    first, second = agui_run("run-1", ["one"]), agui_run("run-2", ["two"])
    body = sse_stream(first + second)
    one = watch_agui(js_client, body)
    two = watch_agui(js_client, body, "--runs", "2")
    assert (one.code, two.code) == (0, 0), one.stderr + two.stderr
    assert [m["content"] for m in one.output["messages"] if m["role"] == "assistant"] == ["one"]
    assert [m["content"] for m in two.output["messages"] if m["role"] == "assistant"] == [
        "one",
        "two",
    ]


def test_agui_client_strips_unknown_keys_and_drops_unknown_events_with_warnings(
    js_client: Client,
) -> None:
    """Not refusals: enforceEvents strips what 1.0 does not describe, warning each time."""
    events = [{**event, "seq": seq} for seq, event in enumerate(agui_run(), 1)]
    events.insert(1, {"type": "AGENTCAST_NOTICE", "note": "x"})
    result = watch_agui(js_client, sse_stream(events))
    assert result.code == 0, result.output["error"]
    assert "AGENTCAST_NOTICE" not in result.output["events"]
    warnings = result.output["warnings"]
    assert len(warnings) == len(events)
    assert "Removed unrecognised material at '/seq'" in warnings[0]
    assert "Dropping unrecognised event 'AGENTCAST_NOTICE'" in warnings[1]


@pytest.mark.parametrize(
    ("broken", "rule"),
    [
        (
            [{"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "x"}],
            "First event must be 'RUN_STARTED'",
        ),
        (
            [
                {"type": "RUN_STARTED", **RUN},
                {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "x"},
            ],
            "No active text message found with ID 'm1'",
        ),
        (
            [
                {"type": "RUN_STARTED", **RUN},
                {"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"},
                {"type": "RUN_FINISHED", **RUN},
            ],
            "Cannot send 'RUN_FINISHED' while text messages are still active: m1",
        ),
        (
            [
                {"type": "RUN_STARTED", **RUN},
                {"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "reasoning"},
            ],
            "ZodError",
        ),
    ],
    ids=["no-run-started", "content-before-start", "finished-while-open", "bad-role"],
)
def test_agui_client_rejects_a_stream_breaking_its_rules(
    js_client: Client, broken: list[dict[str, Any]], rule: str
) -> None:
    result = watch_agui(js_client, sse_stream(broken))
    assert result.code == 1, result.output
    assert rule in result.output["error"]


def test_agui_watch_fails_a_stream_that_ends_before_its_run(js_client: Client) -> None:
    result = watch_agui(js_client, sse_stream(agui_run()[:4]), stays_open=False)
    assert (result.code, result.output["error"]) == (1, "the stream ended after 0 of 1 runs")
    assert result.output["messages"][0]["content"] == "Hel"


def test_agui_watch_times_out_on_a_silent_stream(js_client: Client) -> None:
    with serving({"/sse/demo": Canned(stays_open=True)}) as server:
        result = js_client("agui_watch.mjs", f"{server.url}/sse/demo", timeout=0.5)
    assert result.code == 2
    assert result.output["error"].startswith("timeout")


# ---- AI SDK UI message stream (ai 6.0.333) ------------------------------------------


def aisdk_run(text: list[str] = TEXT) -> list[dict[str, Any]]:
    """A run with reasoning, a tool call with its output, and streamed text."""
    return [
        {"type": "start", "messageId": "run-1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r1"},
        {"type": "reasoning-delta", "id": "r1", "delta": "Thinking."},
        {"type": "reasoning-end", "id": "r1"},
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "search"},
        *({"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": d} for d in ARGS),
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "search",
            "input": {"q": "x"},
        },
        {"type": "tool-output-available", "toolCallId": "c1", "output": "sunny"},
        {"type": "text-start", "id": "t1"},
        *({"type": "text-delta", "id": "t1", "delta": d} for d in text),
        {"type": "text-end", "id": "t1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def assert_assembled(output: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
    assert output["error"] is None
    assert output["chunks"] == [chunk["type"] for chunk in chunks]
    message = output["message"]
    assert (message["id"], message["role"]) == ("run-1", "assistant")
    parts = {part["type"]: part for part in message["parts"]}
    assert parts["reasoning"]["text"] == "Thinking."
    tool = parts["tool-search"]
    assert (tool["state"], tool["input"], tool["output"]) == (
        "output-available",
        {"q": "x"},
        "sunny",
    )
    assert parts["text"] == {"type": "text", "text": "".join(TEXT), "state": "done"}


def read_aisdk(js_client: Client, body: bytes) -> ClientResult:
    with serving({"/sse/demo?protocol=aisdk": Canned(body, stays_open=True)}) as server:
        return js_client("aisdk_read.mjs", f"{server.url}/sse/demo?protocol=aisdk")


def test_aisdk_reader_assembles_a_valid_run_up_to_done(js_client: Client) -> None:
    """The watch stays open after ``[DONE]``: the reader ends there by itself."""
    chunks = aisdk_run()
    result = read_aisdk(js_client, sse_stream(chunks, done=True))
    assert result.code == 0, result.output
    assert_assembled(result.output, chunks)
    assert result.output["done"] is True


def test_aisdk_reader_reports_a_runs_own_error_chunk(js_client: Client) -> None:
    chunks = [*aisdk_run()[:-1], {"type": "error", "errorText": "model overloaded"}]
    chunks.append({"type": "finish", "finishReason": "error"})
    result = read_aisdk(js_client, sse_stream(chunks, done=True))
    assert (result.code, result.output["error"]) == (0, None)
    assert result.output["runErrors"] == ["model overloaded"]


@pytest.mark.parametrize(
    ("broken", "rule"),
    [
        (
            [
                {"type": "start", "messageId": "run-1"},
                {"type": "text-delta", "id": "t1", "delta": "x"},
            ],
            'Received text-delta for missing text part with ID "t1"',
        ),
        (
            [{"type": "start"}, {"type": "message_delta", "delta": "x"}],
            "AI_TypeValidationError",
        ),
        (
            [{"type": "text-start", "id": "t1"}, {"type": "text-delta", "id": "t1"}],
            "expected string, received undefined",
        ),
    ],
    ids=["delta-before-start", "unknown-type", "missing-delta"],
)
def test_aisdk_reader_rejects_a_stream_breaking_its_rules(
    js_client: Client, broken: list[dict[str, Any]], rule: str
) -> None:
    result = read_aisdk(js_client, sse_stream(broken, done=True))
    assert result.code == 1, result.output
    assert rule in result.output["error"]


def test_aisdk_resume_gets_none_on_a_204(js_client: Client) -> None:
    with serving({"/api/chat/chat-1/stream": Canned(status=204)}) as server:
        result = js_client("aisdk_resume.mjs", server.url, "chat-1")
    assert (result.code, result.output["status"], result.output["message"]) == (0, "none", None)
    (request,) = server.requests
    assert request.startswith("GET /api/chat/chat-1/stream HTTP/1.1\r\n")


def test_aisdk_resume_assembles_the_replayed_run(js_client: Client) -> None:
    chunks = aisdk_run()
    body = sse_stream(chunks, done=True)
    with serving({"/agents/chat%201/stream": Canned(body)}) as server:
        result = js_client("aisdk_resume.mjs", server.url, "chat 1", "--api", "/agents")
    assert (result.code, result.output["status"]) == (0, "message"), result.output
    assert_assembled(result.output, chunks)
    assert result.output["done"] is True


def test_aisdk_resume_says_when_done_is_missing(js_client: Client) -> None:
    with serving({"/api/chat/c/stream": Canned(sse_stream(aisdk_run()))}) as server:
        result = js_client("aisdk_resume.mjs", server.url, "c")
    assert (result.code, result.output["done"]) == (0, False)


def test_aisdk_resume_rejects_a_tail_without_its_start(js_client: Client) -> None:
    chunks = aisdk_run()
    first_delta = [chunk["type"] for chunk in chunks].index("text-delta")
    tail = chunks[first_delta:]  # what a cursor resume would send
    with serving({"/api/chat/c/stream": Canned(sse_stream(tail, done=True))}) as server:
        result = js_client("aisdk_resume.mjs", server.url, "c")
    assert result.code == 1
    assert "missing text part" in result.output["error"]


@pytest.mark.parametrize(
    "script", ["agui_watch.mjs", "aisdk_read.mjs", "aisdk_resume.mjs"], ids=lambda s: s[:-4]
)
def test_a_non_2xx_answer_is_no_stream_to_judge(js_client: Client, script: str) -> None:
    """Exit 2, not 1: a rejection (1) means a served stream broke the protocol."""
    with serving({}) as server:
        args = [server.url, "chat-1"] if script == "aisdk_resume.mjs" else [f"{server.url}/sse/x"]
        result = js_client(script, *args)
    assert result.code == 2, result.output
    assert "no such path" in result.output["error"]


@pytest.mark.parametrize(
    "args",
    [["agui_watch.mjs", "u", "--runs", "0"], ["aisdk_resume.mjs", "u"], ["aisdk_read.mjs"]],
)
def test_usage_errors_exit_2_saying_how_to_call(js_client: Client, args: list[str]) -> None:
    completed = subprocess.run(
        ["node", str(JS_DIR / args[0]), *args[1:]], capture_output=True, text=True, timeout=20
    )
    assert (completed.returncode, completed.stdout) == (2, "")
    assert f"usage: node {args[0]}" in completed.stderr
