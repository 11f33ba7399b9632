"""The wire protocol as pure functions: MemGPT's shapes, and every bad input named."""

from __future__ import annotations

import orjson
import pytest

from agentcast.memgpt import protocol
from agentcast.memgpt.protocol import Command, ProtocolError, Subscribe, Unsubscribe, UserMessage


def test_server_messages_have_memgpt_shapes() -> None:
    assert orjson.loads(protocol.server_error("x")) == {"type": "server_error", "message": "x"}
    assert orjson.loads(protocol.command_response("OK")) == {
        "type": "command_response",
        "status": "OK",
    }
    assert orjson.loads(protocol.agent_response_error("bad")) == {
        "type": "agent_response_error",
        "message": "bad",
    }
    assert orjson.loads(protocol.agent_response_start("a1")) == {
        "type": "agent_response_start",
        "agent_id": "a1",
    }
    assert orjson.loads(protocol.agent_response_end("a1")) == {
        "type": "agent_response_end",
        "agent_id": "a1",
    }
    for kind in protocol.MESSAGE_TYPES:
        assert orjson.loads(protocol.agent_response(kind, "m")) == {
            "type": "agent_response",
            "message_type": kind,
            "message": "m",
        }
    assert orjson.loads(protocol.agent_response("assistant_message", "m", "a1", 7)) == {
        "type": "agent_response",
        "message_type": "assistant_message",
        "message": "m",
        "agent_id": "a1",
        "seq": 7,
    }
    with pytest.raises(ValueError, match="message_type"):
        protocol.agent_response("shout", "m")  # type: ignore[arg-type]


def test_client_builders_round_trip_through_the_parser() -> None:
    parse = protocol.parse_client_message
    assert parse(protocol.user_message("hi", "a1")) == UserMessage("hi", "a1")
    assert parse(protocol.create_agent({"name": "a1"})) == Command("create_agent", {"name": "a1"})
    assert parse(protocol.subscribe("a1")) == Subscribe("a1", None)
    assert parse(protocol.subscribe("a1", since=5)) == Subscribe("a1", 5)
    assert parse(protocol.unsubscribe("a1")) == Unsubscribe("a1")
    assert parse('{"type":"user_message","message":"hi","agent_id":"a1"}') == UserMessage(
        "hi", "a1"
    )


@pytest.mark.parametrize(
    ("data", "reply_type", "words"),
    [
        (b"{not json", "server_error", "not valid JSON"),
        (b'"\xff\xfe"', "server_error", "not UTF-8"),
        (b"[1, 2]", "server_error", "expected a JSON object"),
        (b'{"message": "hi"}', "server_error", "no type"),
        (b'{"type": "dance"}', "server_error", "unrecognized client package data type"),
        (
            b'{"type": "command", "command": "delete_all"}',
            "server_error",
            "unrecognized client command",
        ),
        (b'{"type": "command", "command": "create_agent", "config": 3}', "server_error", "config"),
        (b'{"type": "user_message", "message": "hi"}', "agent_response_error", "agent_id"),
        (
            b'{"type": "user_message", "message": "hi", "agent_id": null}',
            "agent_response_error",
            "agent_id",
        ),
        (
            b'{"type": "user_message", "message": "hi", "agent_id": 5}',
            "agent_response_error",
            "agent_id",
        ),
        (
            b'{"type": "user_message", "message": 5, "agent_id": "a"}',
            "agent_response_error",
            "string message",
        ),
        (b'{"type": "subscribe"}', "server_error", "agent_id"),
        (b'{"type": "subscribe", "agent_id": "a", "since": -1}', "server_error", "since"),
        (b'{"type": "subscribe", "agent_id": "a", "since": true}', "server_error", "since"),
        (
            b'{"type": "subscribe", "agent_id": "a", "since": 9223372036854775808}',
            "server_error",
            "since",
        ),
    ],
)
def test_bad_input_is_named_in_the_reply(data: bytes, reply_type: str, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_client_message(data)
    reply = orjson.loads(caught.value.reply)
    assert reply["type"] == reply_type
    assert words in reply["message"]
