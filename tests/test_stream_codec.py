"""The event codec: each event encoded once per encoding, byte for byte; MemGPT clients see
exactly today's frames; snapshots encoded; frames back from the backplane decoded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agentcast.memgpt.protocol import agent_response
from agentcast.streams.codec import EventCodec
from agentcast.streams.encodings import (
    ENCODINGS,
    MEMGPT,
    MEMGPT_KINDS,
    NATIVE,
    encoding_id,
    is_sse,
    memgpt,
    native,
)
from agentcast.streams.events import EVENT_KINDS, check_event
from agentcast.streams.runs import OpenRuns

Event = dict[str, Any]

STREAM: list[Event] = [
    {"type": "run_start", "run_id": "r1", "thread_id": "th"},
    {"type": "message_start", "message_id": "m1", "role": "assistant", "kind": "reasoning"},
    {"type": "message_delta", "message_id": "m1", "delta": "Hm"},
    {"type": "message_end", "message_id": "m1"},
    {"type": "tool_call_start", "tool_call_id": "t1", "name": "search"},
    {"type": "tool_call_delta", "tool_call_id": "t1", "delta": '{"q":"x"}'},
    {"type": "tool_call_end", "tool_call_id": "t1"},
    {"type": "tool_result", "tool_call_id": "t1", "content": "42"},
    {"type": "message_start", "message_id": "m2", "role": "assistant", "kind": "text"},
    {"type": "message_delta", "message_id": "m2", "delta": "It is "},
    {"type": "message_delta", "message_id": "m2", "delta": "42."},
    {"type": "message_end", "message_id": "m2"},
    {"type": "run_end", "run_id": "r1", "outcome": "success", "usage": {"output_tokens": 3}},
]

# ---- encodings ----------------------------------------------------------------------------


def test_encoding_ids_are_websocket_protocols_then_sse_ones() -> None:
    assert ENCODINGS == (
        "memgpt",
        "agentcast",
        "agui",
        "aisdk",
        "letta",
        "agentcast+sse",
        "agui+sse",
        "aisdk+sse",
        "letta+sse",
    )
    assert (MEMGPT, NATIVE) == (0, 1)
    assert encoding_id("memgpt") == MEMGPT
    assert encoding_id("agentcast") == NATIVE
    assert encoding_id("agui", sse=True) == ENCODINGS.index("agui+sse")
    assert [is_sse(i) for i in range(len(ENCODINGS))] == [False] * 5 + [True] * 4
    with pytest.raises(ValueError, match="unknown protocol 'ag-ui'; one of memgpt, agentcast"):
        encoding_id("ag-ui")
    with pytest.raises(ValueError, match="unknown protocol 'memgpt'; one of agentcast, agui"):
        encoding_id("memgpt", sse=True)


def test_native_frames_are_byte_exact_with_keys_in_order() -> None:
    event = {"type": "message_delta", "message_id": "m1", "delta": "Hel"}
    assert native("agent-1", event, 7) == (
        b'{"type":"message_delta","channel":"agent-1","seq":7,"message_id":"m1","delta":"Hel"}'
    )
    assert native("agent-1", event, 9, from_seq=7) == (
        b'{"type":"message_delta","channel":"agent-1","seq":9,"from_seq":7,'
        b'"message_id":"m1","delta":"Hel"}'
    )
    assert native("a", STREAM[-1], 13) == (
        b'{"type":"run_end","channel":"a","seq":13,"run_id":"r1","outcome":"success",'
        b'"usage":{"output_tokens":3}}'
    )


@pytest.mark.parametrize(
    ("role", "kind", "message_type"),
    [
        ("assistant", "text", "assistant_message"),
        ("assistant", "reasoning", "internal_monologue"),
        ("user", "reasoning", "internal_monologue"),
        ("tool", "text", "function_message"),
        ("function", "text", "function_message"),
    ],
)
def test_memgpt_frames_are_todays_agent_responses(role: str, kind: str, message_type: str) -> None:
    whole = {"type": "message", "message_id": "m1", "role": role, "kind": kind, "content": "hi"}
    expected = (
        b'{"type":"agent_response","message_type":"' + message_type.encode() + b'",'
        b'"message":"hi","agent_id":"agent-1","seq":5}'
    )
    assert memgpt("agent-1", whole, 5, None) == expected
    done = {"message_id": "m1", "role": role, "kind": kind, "content": "hi"}
    end = {"type": "message_end", "message_id": "m1"}
    assert memgpt("agent-1", end, 5, done) == expected
    assert expected == agent_response(message_type, "hi", agent_id="agent-1", seq=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["user", "system", "developer"])
def test_memgpt_has_no_frame_for_other_roles_text(role: str) -> None:
    whole = {"type": "message", "message_id": "m1", "role": role, "kind": "text", "content": "x"}
    assert memgpt("a", whole, 1, None) is None


def test_memgpt_renders_a_tool_call_as_running_it() -> None:
    end = {"type": "tool_call_end", "tool_call_id": "t1"}
    done = {"tool_call_id": "t1", "name": "search", "arguments": '{"q":"x"}'}
    assert memgpt("agent-1", end, 9, done) == (
        b'{"type":"agent_response","message_type":"function_message",'
        b'"message":"Running search({\'q\': \'x\'})","agent_id":"agent-1","seq":9}'
    )


def test_memgpt_omits_agent_id_for_a_channel_that_is_not_a_string() -> None:
    whole = {
        "type": "message",
        "message_id": "m",
        "role": "assistant",
        "kind": "text",
        "content": "x",
    }
    assert memgpt(42, whole, 3, None) == (
        b'{"type":"agent_response","message_type":"assistant_message","message":"x","seq":3}'
    )


def test_memgpt_has_no_frame_for_an_end_whose_start_was_not_seen() -> None:
    assert memgpt("a", {"type": "message_end", "message_id": "m"}, 1, None) is None
    assert memgpt("a", {"type": "tool_call_end", "tool_call_id": "t"}, 1, None) is None


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS - MEMGPT_KINDS))
def test_memgpt_has_no_frame_for_any_other_event(kind: str) -> None:
    done = {"message_id": "m", "role": "assistant", "kind": "text", "content": "x"}
    assert memgpt("a", {"type": kind}, 1, done) is None


# ---- the codec ------------------------------------------------------------------------------


def encode_all(codec: EventCodec, encoding: int, channel: str = "agent-1") -> list[list[bytes]]:
    """Each event of STREAM observed in order and encoded at once in ``encoding``."""
    out = []
    for seq, event in enumerate(STREAM, 1):
        item, run = codec.on_event(channel, check_event(event), seq)
        out.append(codec.payloads(encoding, channel, event, seq, None, item, run))
    return out


def test_a_run_encodes_natively_event_for_event() -> None:
    codec = EventCodec()
    assert encode_all(codec, NATIVE) == [[native("agent-1", e, s)] for s, e in enumerate(STREAM, 1)]
    assert codec.runs.total_bytes == 0  # the run ended: nothing kept


def test_memgpt_gets_whole_messages_at_their_ends_only() -> None:
    assert encode_all(EventCodec(), MEMGPT) == [
        [],
        [],
        [],
        [
            b'{"type":"agent_response","message_type":"internal_monologue","message":"Hm",'
            b'"agent_id":"agent-1","seq":4}'
        ],
        [],
        [],
        [
            b'{"type":"agent_response","message_type":"function_message",'
            b'"message":"Running search({\'q\': \'x\'})","agent_id":"agent-1","seq":7}'
        ],
        [],
        [],
        [],
        [],
        [
            b'{"type":"agent_response","message_type":"assistant_message","message":"It is 42.",'
            b'"agent_id":"agent-1","seq":12}'
        ],
        [],
    ]


def test_on_event_gives_each_event_its_item_and_open_run() -> None:
    codec = EventCodec()
    contexts = [codec.on_event("a", check_event(e), s) for s, e in enumerate(STREAM, 1)]
    run = STREAM[0]
    assert contexts[0] == (None, run)  # run_start: the run it opens
    assert contexts[2] == (STREAM[1], run)  # a delta: its message's start
    assert contexts[3] == (
        {"message_id": "m1", "role": "assistant", "kind": "reasoning", "content": "Hm"},
        run,
    )
    assert contexts[5] == (STREAM[4], run)
    assert contexts[6] == (
        {"tool_call_id": "t1", "name": "search", "arguments": '{"q":"x"}'},
        run,
    )
    assert contexts[7] == (STREAM[4], run)  # a result: its call's start
    assert contexts[12] == (None, run)  # run_end: the run it ends
    assert codec.on_event("a", check_event(STREAM[8]), 14) == (None, None)  # outside a run


def test_a_merged_delta_is_byte_exact() -> None:
    codec = EventCodec()
    first = {"type": "tool_call_delta", "tool_call_id": "t1", "delta": "{"}
    merged = {**first, "delta": '{"q":1}'}
    assert codec.payloads(NATIVE, "a", merged, 6, 4, None, None) == [
        b'{"type":"tool_call_delta","channel":"a","seq":6,"from_seq":4,'
        b'"tool_call_id":"t1","delta":"{\\"q\\":1}"}'
    ]
    assert codec.payloads(MEMGPT, "a", merged, 6, 4, None, None) == []


def test_snapshot_gives_each_event_its_seq_item_and_run() -> None:
    codec = EventCodec()
    for seq, event in enumerate(STREAM[:3] + STREAM[4:6], 1):  # m1 and t1 open
        codec.on_event("a", event, seq)
    run = STREAM[0]
    assert codec.snapshot("a", since=0) == [
        (run, 1, None, None, run),
        (STREAM[1], 2, None, None, run),
        (STREAM[2], 3, None, STREAM[1], run),
        (STREAM[4], 4, None, None, run),
        (STREAM[5], 5, None, STREAM[4], run),
    ]
    assert codec.snapshot("a", since=5) == []
    assert codec.snapshot("elsewhere", since=0) == []


def test_a_snapshot_names_a_merged_deltas_range_and_a_completed_items_whole_text() -> None:
    codec = EventCodec()
    for seq, event in enumerate(STREAM[:1] + STREAM[8:11] + STREAM[4:7], 1):
        codec.on_event("a", event, seq)
    run = STREAM[0]
    merged = {"type": "message_delta", "message_id": "m2", "delta": "It is 42."}
    done = {"tool_call_id": "t1", "name": "search", "arguments": '{"q":"x"}'}
    assert codec.snapshot("a", since=1) == [
        (STREAM[8], 2, None, None, run),
        (merged, 4, 3, STREAM[8], run),
        (STREAM[4], 5, None, None, run),
        (STREAM[5], 6, None, STREAM[4], run),
        (STREAM[6], 7, None, done, run),
    ]


def test_snapshot_is_none_when_the_state_was_lost() -> None:
    codec = EventCodec(OpenRuns(max_run_bytes=100))
    codec.on_event("a", STREAM[0], 1)
    assert codec.runs.lost_runs == 1
    assert codec.snapshot("a", since=0) is None
    codec.forget("a")
    assert codec.snapshot("a", since=0) == []


@pytest.mark.parametrize("event", STREAM, ids=lambda e: e["type"])
def test_decode_takes_back_a_native_frame_as_its_event(event: Event) -> None:
    codec = EventCodec()
    assert codec.decode(native("a", event, 12)) == event
    if event["type"] == "message_delta":
        assert codec.decode(native("a", event, 12, from_seq=10)) == event


@pytest.mark.parametrize(
    "payload",
    [
        agent_response("assistant_message", "hi", agent_id="a", seq=1),  # a MemGPT frame
        b'{"type":"agent_response_end"}',
        b"not json",
        b"[1,2]",
        b'"message_delta"',
        b'{"type":"message_delta","channel":"a","seq":1,"message_id":"m1"}',  # no delta
        b'{"type":"message_start","seq":1,"message_id":"m1","role":"assistant","kind":"poem"}',
        b'{"type":["message"]}',
        b"\xff",
    ],
)
def test_decode_says_none_for_what_is_not_an_event(payload: bytes) -> None:
    assert EventCodec().decode(payload) is None


def test_decode_does_not_observe() -> None:
    codec = EventCodec()
    frame = native("a", STREAM[0], 1)
    assert codec.decode(frame) == STREAM[0]
    assert codec.runs.total_bytes == 0
    assert orjson.loads(frame)["seq"] == 1
