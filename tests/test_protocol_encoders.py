"""The protocol encoders (AG-UI, AI SDK UI message stream v1, Letta): every payload of a
whole run checked against the protocol's own models (ag-ui-protocol, letta-client) or its
chunk schema (ai 6.0.333, transcribed), in an order its client accepts, and the text a
client assembles from the deltas is the producer's, a merged delta included.

The rules checked come from docs/research/ag-ui-and-letta.md and
docs/research/ai-sdk-ui-message-stream.md. Each event's ``item`` and ``run`` are what the
codec captures: ``OpenRuns.observe`` gives the completed message or tool call at its end.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest
from ag_ui.core import Event as AguiEvent
from letta_client.types.agents.letta_streaming_response import LettaStreamingResponse
from pydantic import BaseModel, TypeAdapter

from agentcast.streams.events import EVENT_KINDS, STREAM_ID, check_event
from agentcast.streams.protocols import PROTOCOLS, agui, aisdk, letta
from agentcast.streams.runs import OpenRuns

Event = dict[str, Any]
Entry = tuple[int, int | None, Event, Event | None, Event | None]  # seq, from_seq, event, item, run

CHANNEL = "agent-1"
RUN = [
    {"type": "run_start", "run_id": "r1", "thread_id": "th1"},
    {"type": "step_start", "run_id": "r1", "step": "think"},
    {"type": "message_start", "message_id": "m1", "role": "assistant", "kind": "reasoning"},
    {"type": "message_delta", "message_id": "m1", "delta": "Let me "},
    {"type": "message_delta", "message_id": "m1", "delta": "look."},
    {"type": "message_end", "message_id": "m1"},
    {"type": "tool_call_start", "tool_call_id": "t1", "name": "search", "parent_message_id": "m2"},
    {"type": "tool_call_delta", "tool_call_id": "t1", "delta": '{"q": '},
    {"type": "tool_call_delta", "tool_call_id": "t1", "delta": '"weather"}'},
    {"type": "tool_call_end", "tool_call_id": "t1"},
    {"type": "tool_result", "tool_call_id": "t1", "content": "sunny"},
    {"type": "step_end", "run_id": "r1", "step": "think"},
    {"type": "step_start", "run_id": "r1", "step": "answer"},
    {"type": "state_snapshot", "snapshot": {"todo": ["a"], "step": 1}},
    {"type": "state_patch", "patch": [{"op": "replace", "path": "/step", "value": 2}]},
    {"type": "custom", "name": "progress", "value": {"done": 1}},
    {"type": "message_start", "message_id": "m2", "role": "assistant", "kind": "text"},
    {"type": "message_delta", "message_id": "m2", "delta": "It is "},
    {"type": "message_delta", "message_id": "m2", "delta": ""},
    {"type": "message_delta", "message_id": "m2", "delta": "sunny "},  # merged with the two
    {"type": "message_delta", "message_id": "m2", "delta": "in "},  # before it, as for a
    {"type": "message_delta", "message_id": "m2", "delta": "Paris."},  # slow watcher
    {"type": "message_end", "message_id": "m2"},
    {"type": "message", "message_id": "m3", "role": "assistant", "kind": "text", "content": "Bye."},
    {"type": "step_end", "run_id": "r1", "step": "answer"},
    {"type": "run_end", "run_id": "r1", "outcome": "success",
     "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}},
]  # fmt: skip
MERGED = (19, 21)  # the 1-based seqs of m2's deltas "", "sunny ", "in " sent as one
FAILED = [
    {"type": "run_start", "run_id": "r2"},
    {"type": "message_start", "message_id": "m9", "role": "assistant", "kind": "text"},
    {"type": "message_delta", "message_id": "m9", "delta": "Half"},
    {"type": "run_error", "run_id": "r2", "message": "ValueError: boom"},
]
TEXTS = {"m1": "Let me look.", "m2": "It is sunny in Paris.", "m3": "Bye."}
ARGUMENTS = {"t1": '{"q": "weather"}'}


def entries(stream: list[Event], merged: tuple[int, int] | None = None) -> list[Entry]:
    """Each event with its seq, item and run as the codec captures them; the deltas with
    seqs ``merged`` (first, last) as one merged delta."""
    runs = OpenRuns()
    starts: dict[str, Event] = {}
    run: Event | None = None
    out: list[Entry] = []
    for seq, event in enumerate(stream, 1):
        check_event(event)
        done = runs.observe(CHANNEL, event, seq)
        kind = event["type"]
        run = event if kind == "run_start" else run
        item: Event | None = None
        if kind in ("message_start", "tool_call_start"):
            starts[event[STREAM_ID[kind]]] = event
        elif kind in ("message_end", "tool_call_end"):
            item = done
        elif kind in STREAM_ID and kind != "message":
            item = starts.get(event[STREAM_ID[kind]])
        out.append((seq, None, event, item, run))
        if kind in ("run_end", "run_error"):
            run = None
    if merged is not None:
        first, last = merged
        pieces = out[first - 1 : last]
        delta = "".join(entry[2]["delta"] for entry in pieces)
        _, _, event, item, run = pieces[-1]
        out[first - 1 : last] = [(last, first, {**event, "delta": delta}, item, run)]
    return out


def encoded(encode: Any, stream: list[Entry]) -> list[tuple[int, bytes]]:
    return [
        (seq, payload)
        for seq, from_seq, event, item, run in stream
        for payload in encode(CHANNEL, event, seq, from_seq, item, run)
    ]


def no_extra_keys(model: BaseModel) -> None:
    """Nothing in the payload the model does not name (both packages keep unknown keys)."""
    assert not model.model_extra, f"{type(model).__name__} has unknown keys {model.model_extra}"
    for value in model.__dict__.values():
        if isinstance(value, BaseModel):
            no_extra_keys(value)
        elif isinstance(value, list):
            for member in value:
                if isinstance(member, BaseModel):
                    no_extra_keys(member)


def test_each_protocol_has_one_encode_with_the_same_signature() -> None:
    assert {"agui": agui.encode, "aisdk": aisdk.encode, "letta": letta.encode} == PROTOCOLS
    assert aisdk.DONE == b"[DONE]"


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_no_event_raises_without_its_item_or_run(name: str) -> None:
    """A start never seen (a producer's bug, state lost) or no run: the best valid thing."""
    encode = PROTOCOLS[name]
    stream = entries(RUN + FAILED)
    for seq, _, event, item, run in stream:
        for maybe_item in {id(item): item, id(None): None}.values():
            for maybe_run in {id(run): run, id(None): None}.values():
                for payload in encode(CHANNEL, event, seq, None, maybe_item, maybe_run):
                    assert payload == aisdk.DONE or isinstance(orjson.loads(payload), dict)
    assert {entry[2]["type"] for entry in stream} == EVENT_KINDS


# ---- AG-UI ------------------------------------------------------------------------------

_AGUI = TypeAdapter(AguiEvent)


class AguiVerifier:
    """The order rules of @ag-ui/client 1.0.0's ``verifyEvents`` (research notes, §3)."""

    def __init__(self) -> None:
        self.run = "none"  # none | active | finished | errored
        self.open: dict[str, set[str]] = defaultdict(set)  # family -> open ids

    def check(self, event: Event) -> None:
        kind = event["type"]
        if self.run in ("none", "finished") and kind not in ("RUN_STARTED", "RUN_ERROR"):
            raise AssertionError(f"{kind} while no run is active")
        if self.run == "errored" and kind != "RUN_STARTED":
            raise AssertionError(f"{kind} after RUN_ERROR")
        if kind == "RUN_STARTED":
            assert self.run != "active", "RUN_STARTED while a run is active"
            self.run, self.open = "active", defaultdict(set)
        elif kind == "RUN_FINISHED":
            still = {family: ids for family, ids in self.open.items() if ids}
            assert not still, f"RUN_FINISHED while open: {still}"
            self.run = "finished"
        elif kind == "RUN_ERROR":
            self.run = "errored"
        else:
            self._span(kind, event)

    def _span(self, kind: str, event: Event) -> None:
        if kind.startswith("STEP_"):
            family, key, starts = "STEP", event["stepName"], kind == "STEP_STARTED"
        elif kind.startswith(("TEXT_MESSAGE_", "REASONING_MESSAGE_", "TOOL_CALL_")):
            if kind == "TOOL_CALL_RESULT":
                return  # not checked by the verifier
            family, _, stage = kind.rpartition("_")
            key = event.get("messageId", event.get("toolCallId"))
            starts = stage == "START"
            if not starts and stage != "END":
                assert key in self.open[family], f"{kind} for {key} without its START"
                return
        else:
            return  # state, custom: not checked
        if starts:
            assert key not in self.open[family], f"{kind}: {key} is already open"
            self.open[family].add(key)
        else:
            assert key in self.open[family], f"{kind} for {key} without its START"
            self.open[family].discard(key)


def agui_events(payloads: list[tuple[int, bytes]]) -> list[Event]:
    """The payloads, each validated by ag-ui-protocol's model with nothing unknown in it,
    its seq in ``metadata.agentcast``, and passed through the verifier's rules."""
    verifier = AguiVerifier()
    events = []
    for seq, payload in payloads:
        event = orjson.loads(payload)
        no_extra_keys(_AGUI.validate_python(event))
        assert event["metadata"]["agentcast"]["seq"] == seq
        verifier.check(event)
        events.append(event)
    return events


def test_agui_verifier_rules_refuse_what_the_client_refuses() -> None:
    """The checker itself can fail: the research's refused streams B1, B2, B3, B6."""
    refused = [
        [{"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "x"}],
        [{"type": "RUN_STARTED"}, {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1"}],
        [{"type": "RUN_STARTED"}, {"type": "RUN_STARTED"}],
        [{"type": "RUN_STARTED"}, {"type": "TEXT_MESSAGE_START", "messageId": "m1"},
         {"type": "RUN_FINISHED"}],
    ]  # fmt: skip
    for stream in refused:
        verifier = AguiVerifier()
        with pytest.raises(AssertionError):
            for event in stream:
                verifier.check(event)


def test_agui_a_whole_run_is_valid_and_assembles_to_the_producers_text() -> None:
    events = agui_events(encoded(agui.encode, entries(RUN, MERGED)))
    assert [e["type"] for e in events][:3] == [
        "RUN_STARTED",
        "STEP_STARTED",
        "REASONING_MESSAGE_START",
    ]
    assert events[0] == {"type": "RUN_STARTED", "threadId": "th1", "runId": "r1",
                         "metadata": {"agentcast": {"seq": 1}}}  # fmt: skip
    texts: dict[str, str] = defaultdict(str)
    arguments: dict[str, str] = defaultdict(str)
    for event in events:
        if event["type"] in ("TEXT_MESSAGE_CONTENT", "REASONING_MESSAGE_CONTENT"):
            texts[event["messageId"]] += event["delta"]
        elif event["type"] == "TOOL_CALL_ARGS":
            arguments[event["toolCallId"]] += event["delta"]
    assert texts == TEXTS
    assert arguments == ARGUMENTS
    merged = [e for e in events if e["metadata"]["agentcast"].get("fromSeq")]
    assert merged == [{"type": "TEXT_MESSAGE_CONTENT", "messageId": "m2", "delta": "sunny in ",
                       "metadata": {"agentcast": {"seq": 21, "fromSeq": 19}}}]  # fmt: skip
    by_type = {e["type"]: e for e in events}
    assert by_type["REASONING_MESSAGE_START"]["role"] == "reasoning"
    assert by_type["TOOL_CALL_START"]["parentMessageId"] == "m2"
    assert by_type["TOOL_CALL_RESULT"]["messageId"] == "t1:result"
    assert by_type["STATE_DELTA"]["delta"] == RUN[14]["patch"]
    assert by_type["CUSTOM"]["value"] == {"done": 1}
    assert events[-1] == {
        "type": "RUN_FINISHED", "threadId": "th1", "runId": "r1", "outcome": {"type": "success"},
        "usage": [{"inputTokens": 12, "outputTokens": 7, "totalTokens": 19}],
        "metadata": {"agentcast": {"seq": 26}},
    }  # fmt: skip


def test_agui_a_failed_run_and_the_next_one_are_valid_in_one_stream() -> None:
    stream = entries(FAILED + RUN)
    events = agui_events(encoded(agui.encode, stream))
    assert events[3] == {"type": "RUN_ERROR", "message": "ValueError: boom",
                         "metadata": {"agentcast": {"seq": 4}}}  # fmt: skip
    assert events[4]["type"] == "RUN_STARTED"
    assert events[0]["threadId"] == CHANNEL  # no thread_id: the channel


@pytest.mark.parametrize(
    ("outcome", "last"),
    [
        ("cancelled", {"type": "RUN_FINISHED", "threadId": "th1", "runId": "r1",
                       "outcome": {"type": "cancelled"}}),
        ("interrupted", {"type": "RUN_FINISHED", "threadId": "th1", "runId": "r1"}),
        ("error", {"type": "RUN_ERROR", "message": "run r1 ended with an error"}),
    ],
)  # fmt: skip
def test_agui_run_outcomes_map_where_the_schema_has_them(outcome: str, last: Event) -> None:
    end = {"type": "run_end", "run_id": "r1", "outcome": outcome,
           "usage": {"input_tokens": -1, "output_tokens": 2.5, "model": "x"}}  # fmt: skip
    events = agui_events(encoded(agui.encode, entries([RUN[0], end])))
    events[-1].pop("metadata")
    assert events[-1] == last  # counts that are no whole numbers left out, and usage with them


def test_agui_nothing_outside_a_run_but_run_error() -> None:
    run = RUN[0]
    for event in RUN[1:-1]:
        assert agui.encode(CHANNEL, event, 3, None, None, None) == []
    assert agui.encode(CHANNEL, RUN[-1], 3, None, None, None) == []  # a run_end of no run
    (error,) = agui.encode(CHANNEL, FAILED[-1], 3, None, None, None)
    assert orjson.loads(error)["type"] == "RUN_ERROR"
    delta = {"type": "message_delta", "message_id": "m?", "delta": "x"}
    assert agui.encode(CHANNEL, delta, 3, None, None, run) == []  # its start never seen
    bad = {"type": "state_patch", "patch": [{"op": "add", "path": "/a"}]}  # no value
    assert agui.encode(CHANNEL, bad, 3, None, None, run) == []
    user = {"type": "message", "message_id": "u", "role": "tool", "kind": "text", "content": ""}
    start = orjson.loads(agui.encode(CHANNEL, user, 3, None, None, run)[0])
    assert start["role"] == "assistant"  # a role AG-UI's text messages do not have


# ---- AI SDK UI message stream v1 ------------------------------------------------------------

# type -> (required keys, optional keys): ui-message-chunks.ts of ai 6.0.333, the members
# this encoder may send; ai < 6.0.231 refuses any other key.
_CHUNKS: dict[str, tuple[set[str], set[str]]] = {
    "start": (set(), {"messageId", "messageMetadata"}),
    "start-step": (set(), set()),
    "finish-step": (set(), set()),
    "text-start": ({"id"}, {"providerMetadata"}),
    "text-delta": ({"id", "delta"}, {"providerMetadata"}),
    "text-end": ({"id"}, {"providerMetadata"}),
    "reasoning-start": ({"id"}, {"providerMetadata"}),
    "reasoning-delta": ({"id", "delta"}, {"providerMetadata"}),
    "reasoning-end": ({"id"}, {"providerMetadata"}),
    "tool-input-start": ({"toolCallId", "toolName"}, {"inputEncoding", "dynamic", "title"}),
    "tool-input-delta": ({"toolCallId", "inputTextDelta"}, set()),
    "tool-input-available": ({"toolCallId", "toolName", "input"}, {"dynamic", "title"}),
    "tool-input-error": ({"toolCallId", "toolName", "input", "errorText"}, {"dynamic", "title"}),
    "tool-output-available": ({"toolCallId", "output"}, {"dynamic", "preliminary"}),
    "error": ({"errorText"}, set()),
    "finish": (set(), {"finishReason", "messageMetadata"}),
    "data-": ({"data"}, {"id", "transient"}),
}
_FINISH_REASONS = {"stop", "length", "content-filter", "tool-calls", "error", "other"}


def aisdk_chunks(payloads: list[tuple[int, bytes]]) -> list[Event]:
    """The chunks before ``[DONE]`` (which must be last), each fitting its schema exactly
    and in an order ``processUIMessageStream`` accepts."""
    assert payloads[-1][1] == aisdk.DONE
    chunks = [orjson.loads(payload) for _, payload in payloads[:-1]]
    text: set[str] = set()
    reasoning: set[str] = set()
    tools: set[str] = set()
    for chunk in chunks:
        kind = chunk["type"]
        required, optional = _CHUNKS["data-" if kind.startswith("data-") else kind]
        keys = set(chunk) - {"type"}
        assert required <= keys <= required | optional, chunk
        for key in required & {"id", "delta", "toolCallId", "toolName", "errorText"}:
            assert isinstance(chunk[key], str), chunk
        assert kind != "finish" or chunk.get("finishReason") in _FINISH_REASONS
        family, _, stage = kind.rpartition("-")
        if family in ("text", "reasoning"):
            open_ids = text if family == "text" else reasoning
            if stage == "start":
                open_ids.add(chunk["id"])
            else:
                assert chunk["id"] in open_ids, f"{kind} for missing part {chunk['id']}"
                if stage == "end":
                    open_ids.discard(chunk["id"])
        elif kind == "finish-step":  # the reader forgets the step's text and reasoning parts
            text.clear()
            reasoning.clear()
        elif kind in ("tool-input-start", "tool-input-available", "tool-input-error"):
            tools.add(chunk["toolCallId"])
        elif kind in ("tool-input-delta", "tool-output-available"):
            assert chunk["toolCallId"] in tools, f"{kind} for missing tool call"
    assert b"[DONE]" not in b"".join(payload for _, payload in payloads[:-1])
    return chunks


def test_aisdk_a_whole_run_is_one_valid_message_and_assembles_to_the_producers_text() -> None:
    chunks = aisdk_chunks(encoded(aisdk.encode, entries(RUN, MERGED)))
    assert chunks[0] == {"type": "start", "messageId": "r1"}
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}
    assert all("seq" not in chunk and "fromSeq" not in chunk for chunk in chunks)
    texts: dict[str, str] = defaultdict(str)
    arguments: dict[str, str] = defaultdict(str)
    for chunk in chunks:
        if chunk["type"] in ("text-delta", "reasoning-delta"):
            assert chunk["delta"], "empty deltas are dropped"
            texts[chunk["id"]] += chunk["delta"]
        elif chunk["type"] == "tool-input-delta":
            arguments[chunk["toolCallId"]] += chunk["inputTextDelta"]
    assert texts == TEXTS
    assert arguments == ARGUMENTS
    by_type = {chunk["type"]: chunk for chunk in chunks}
    assert by_type["tool-input-available"]["input"] == {"q": "weather"}
    assert by_type["tool-output-available"] == {"type": "tool-output-available", "toolCallId": "t1",
                                                "output": "sunny"}  # fmt: skip
    assert by_type["data-agentcast-state"] == {"type": "data-agentcast-state", "id": "state",
                                               "data": {"todo": ["a"], "step": 1}}  # fmt: skip
    assert by_type["data-agentcast-state-patch"]["data"] == RUN[14]["patch"]
    assert by_type["data-progress"] == {"type": "data-progress", "data": {"done": 1}}
    assert [c["type"] for c in chunks].count("start-step") == 2


def test_aisdk_a_failed_run_ends_with_error_finish_and_done() -> None:
    payloads = encoded(aisdk.encode, entries(FAILED))
    chunks = aisdk_chunks(payloads)
    assert chunks[-2:] == [{"type": "error", "errorText": "ValueError: boom"},
                           {"type": "finish", "finishReason": "error"}]  # fmt: skip
    assert payloads[-1] == (4, aisdk.DONE)


def test_aisdk_what_its_reader_would_refuse_is_not_sent() -> None:
    run = RUN[0]
    assert all(aisdk.encode(CHANNEL, event, 3, None, None, None) == [] for event in RUN[1:-1])
    call = {"tool_call_id": "t1", "name": "search", "arguments": '{"q": '}
    (error,) = aisdk.encode(
        CHANNEL, {"type": "tool_call_end", "tool_call_id": "t1"}, 3, None, call, run
    )
    error_chunk = orjson.loads(error)
    assert error_chunk.pop("errorText").startswith("the arguments are not JSON")
    assert error_chunk == {"type": "tool-input-error", "toolCallId": "t1", "toolName": "search",
                           "input": '{"q": '}  # fmt: skip
    no_arguments = {**call, "arguments": ""}
    (available,) = aisdk.encode(CHANNEL, {"type": "tool_call_end", "tool_call_id": "t1"}, 3, None,
                                no_arguments, run)  # fmt: skip
    assert orjson.loads(available)["input"] == {}
    empty = {"type": "message_delta", "message_id": "m2", "delta": ""}
    assert aisdk.encode(CHANNEL, empty, 3, None, RUN[16], run) == []  # legal, but empty
    result = {"type": "tool_result", "tool_call_id": "t?", "content": "x"}
    assert aisdk.encode(CHANNEL, result, 3, None, None, run) == []  # no part for the call
    user = {"type": "message", "message_id": "u", "role": "user", "kind": "text", "content": "hi"}
    assert aisdk.encode(CHANNEL, user, 3, None, None, run) == []
    patched = {"type": "state_snapshot", "snapshot": {"step": 2}}
    (state,) = aisdk.encode(CHANNEL, RUN[14], 3, None, patched, run)
    assert orjson.loads(state) == {
        "type": "data-agentcast-state",
        "id": "state",
        "data": {"step": 2},
    }
    for outcome, reason in [("cancelled", "other"), ("interrupted", "other"), ("error", "error")]:
        end = {"type": "run_end", "run_id": "r1", "outcome": outcome}
        finish, done = aisdk.encode(CHANNEL, end, 3, None, None, None)  # ends even a run unknown
        assert (orjson.loads(finish), done) == (
            {"type": "finish", "finishReason": reason},
            aisdk.DONE,
        )


# ---- Letta --------------------------------------------------------------------------------

_LETTA = TypeAdapter(LettaStreamingResponse)


def letta_messages(payloads: list[tuple[int, bytes]]) -> list[Event]:
    """The messages before ``[DONE]``, each validated by letta-client's models with nothing
    unknown in it; a message chunk's ``seq_id`` is its event's seq."""
    assert payloads[-1][1] == aisdk.DONE
    messages = []
    for seq, payload in payloads[:-1]:
        message = orjson.loads(payload)
        no_extra_keys(_LETTA.validate_python(message))
        if "id" in message:
            assert message["seq_id"] == seq
        messages.append(message)
    return messages


def test_letta_a_whole_run_validates_and_assembles_by_id_to_the_producers_text() -> None:
    messages = letta_messages(encoded(letta.encode, entries(RUN, MERGED)))
    texts: dict[tuple[str, str], str] = defaultdict(str)
    arguments: dict[str, str] = defaultdict(str)
    for message in messages:
        kind = message["message_type"]
        if kind in ("reasoning_message", "assistant_message"):
            assert message["run_id"] == "r1"
            texts[message["id"], kind] += message.get("reasoning", message.get("content"))
        elif kind == "tool_call_message":
            assert message["tool_call"]["name"] == "search"
            arguments[message["tool_call"]["tool_call_id"]] += message["tool_call"]["arguments"]
    assert texts == {
        ("m1", "reasoning_message"): TEXTS["m1"],
        ("m2", "assistant_message"): TEXTS["m2"],
        ("m3", "assistant_message"): TEXTS["m3"],
    }
    assert arguments == ARGUMENTS
    merged = [m for m in messages if m.get("content") == "sunny in "]
    assert [m["seq_id"] for m in merged] == [21]
    (result,) = [m for m in messages if m["message_type"] == "tool_return_message"]
    assert (result["id"], result["tool_return"], result["status"]) == (
        "t1:result",
        "sunny",
        "success",
    )
    assert messages[-2:] == [
        {"message_type": "stop_reason", "stop_reason": "end_turn"},
        {"message_type": "usage_statistics", "prompt_tokens": 12, "completion_tokens": 7,
         "total_tokens": 19},
    ]  # fmt: skip


def test_letta_a_failed_run_ends_with_an_error_message_and_done() -> None:
    messages = letta_messages(encoded(letta.encode, entries(FAILED)))
    assert messages[-2:] == [
        {"message_type": "stop_reason", "stop_reason": "error"},
        {"message_type": "error_message", "error_type": "internal_error",
         "message": "ValueError: boom", "run_id": "r2"},
    ]  # fmt: skip
    roles = {"user": "user_message", "system": "system_message", "tool": "assistant_message"}
    for role, message_type in roles.items():
        whole = {"type": "message", "message_id": "x", "role": role, "kind": "text", "content": "c"}
        (payload,) = letta.encode(CHANNEL, whole, 3, None, None, None)  # outside a run: no run_id
        message = orjson.loads(payload)
        no_extra_keys(_LETTA.validate_python(message))
        assert message["message_type"] == message_type
        assert "run_id" not in message
