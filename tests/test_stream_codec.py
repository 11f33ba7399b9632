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


def test_encoding_ids_are_indexes_of_their_names() -> None:
    assert ENCODINGS == ("memgpt", "agentcast")
    assert (MEMGPT, NATIVE) == (0, 1)
    assert encoding_id("memgpt") == MEMGPT
    assert encoding_id("agentcast") == NATIVE
    with pytest.raises(ValueError, match="unknown encoding 'ag-ui'; one of memgpt, agentcast"):
        encoding_id("ag-ui")


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


def test_on_event_encodes_a_run_for_both_encodings() -> None:
    codec = EventCodec()
    frames = [codec.on_event("agent-1", check_event(e), seq) for seq, e in enumerate(STREAM, 1)]
    assert [f[NATIVE] for f in frames] == [native("agent-1", e, s) for s, e in enumerate(STREAM, 1)]
    assert [f[MEMGPT] for f in frames] == [
        None,
        None,
        None,
        b'{"type":"agent_response","message_type":"internal_monologue","message":"Hm",'
        b'"agent_id":"agent-1","seq":4}',
        None,
        None,
        b'{"type":"agent_response","message_type":"function_message",'
        b'"message":"Running search({\'q\': \'x\'})","agent_id":"agent-1","seq":7}',
        None,
        None,
        None,
        None,
        b'{"type":"agent_response","message_type":"assistant_message","message":"It is 42.",'
        b'"agent_id":"agent-1","seq":12}',
        None,
    ]
    assert codec.runs.total_bytes == 0  # the run ended: nothing kept


def test_merged_deltas_are_byte_exact_and_memgpt_has_none() -> None:
    codec = EventCodec()
    first = {"type": "tool_call_delta", "tool_call_id": "t1", "delta": "{"}
    assert codec.merged(NATIVE, "a", first, '{"q":1}', 4, 6) == (
        b'{"type":"tool_call_delta","channel":"a","seq":6,"from_seq":4,'
        b'"tool_call_id":"t1","delta":"{\\"q\\":1}"}'
    )
    assert codec.merged(MEMGPT, "a", first, '{"q":1}', 4, 6) is None
    assert first["delta"] == "{"
    with pytest.raises(ValueError, match="unknown encoding id 2"):
        codec.merged(2, "a", first, "x", 1, 2)


def test_snapshot_is_encoded_native_only_in_seq_order() -> None:
    codec = EventCodec()
    for seq, event in enumerate(STREAM[:3] + STREAM[4:6], 1):  # m1 and t1 open
        codec.on_event("a", event, seq)
    assert codec.snapshot("a", since=0) == [
        (1, (None, b'{"type":"run_start","channel":"a","seq":1,"run_id":"r1","thread_id":"th"}')),
        (
            2,
            (
                None,
                b'{"type":"message_start","channel":"a","seq":2,"message_id":"m1",'
                b'"role":"assistant","kind":"reasoning"}',
            ),
        ),
        (
            3,
            (
                None,
                b'{"type":"message_delta","channel":"a","seq":3,"message_id":"m1","delta":"Hm"}',
            ),
        ),
        (
            4,
            (
                None,
                b'{"type":"tool_call_start","channel":"a","seq":4,"tool_call_id":"t1",'
                b'"name":"search"}',
            ),
        ),
        (
            5,
            (
                None,
                b'{"type":"tool_call_delta","channel":"a","seq":5,"tool_call_id":"t1",'
                b'"delta":"{\\"q\\":\\"x\\"}"}',
            ),
        ),
    ]
    assert codec.snapshot("a", since=5) == []
    assert codec.snapshot("elsewhere", since=0) == []


def test_a_merged_delta_in_a_snapshot_names_its_range() -> None:
    codec = EventCodec()
    for seq, event in enumerate(STREAM[:1] + STREAM[8:11], 1):
        codec.on_event("a", event, seq)
    assert codec.snapshot("a", since=1) == [
        (
            2,
            (
                None,
                b'{"type":"message_start","channel":"a","seq":2,"message_id":"m2",'
                b'"role":"assistant","kind":"text"}',
            ),
        ),
        (
            4,
            (
                None,
                b'{"type":"message_delta","channel":"a","seq":4,"from_seq":3,'
                b'"message_id":"m2","delta":"It is 42."}',
            ),
        ),
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
