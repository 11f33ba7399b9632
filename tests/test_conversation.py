"""``Conversation``, the client's reading of frames, fed the frames the server builds: a
notice is never taken for an answer, and a restarted numbering restarts the count."""

from __future__ import annotations

from typing import Any

import orjson

from agentcast import notices
from agentcast.client.conversation import Conversation, Outcome
from agentcast.memgpt import protocol


def frame(data: bytes) -> dict[str, Any]:
    return orjson.loads(data)  # type: ignore[no-any-return]


def said(text: str, seq: int, agent_id: str = "demo") -> dict[str, Any]:
    return frame(protocol.agent_response("assistant_message", text, agent_id, seq))


def resumed_after(conversation: Conversation, last_seq: int) -> None:
    """``conversation`` printed up to ``last_seq``, reconnected, and had its resume acked."""
    for seq in range(1, last_seq + 1):
        conversation.receive(said(f"m{seq}", seq))
    assert conversation.resume() == protocol.subscribe("demo", last_seq)
    ack = conversation.receive(frame(protocol.command_response("OK: subscribed to demo")))
    assert ack == Outcome(answers=True)


def test_a_resume_past_the_last_seq_is_a_restart_and_restarts_the_count() -> None:
    conversation = Conversation("demo")
    resumed_after(conversation, 3)
    notice = conversation.receive(frame(notices.resume_gap("demo", 3, 1, 0)))
    assert not notice.answers and notice.reply is None
    assert notice.notice is not None and "numbering restarted" in notice.notice
    assert conversation.last_seq == 0
    conversation.ask("two")
    assert (
        conversation.receive(said("You said: two", 1)).reply == "[assistant_message] You said: two"
    )
    assert conversation.receive(frame(protocol.agent_response_end("demo"))).answers


def test_a_trimmed_history_keeps_the_count() -> None:
    conversation = Conversation("demo")
    resumed_after(conversation, 3)
    notice = conversation.receive(frame(notices.resume_gap("demo", 3, 10, 12)))
    assert notice.notice is not None and "no longer kept" in notice.notice
    assert conversation.last_seq == 3
    assert conversation.receive(said("m10", 10)).reply == "[assistant_message] m10"
    assert conversation.receive(said("m3", 3)) == Outcome()  # printed before: not again


def test_a_backplane_restart_notice_restarts_the_count_while_live() -> None:
    conversation = Conversation("demo")
    conversation.receive(said("m5", 5))
    notice = conversation.receive(frame(notices.channel_restarted("demo", 5)))
    assert notice.notice is not None and "numbering restarted" in notice.notice
    assert conversation.receive(said("new", 1)).reply == "[assistant_message] new"


def test_only_the_end_of_a_reply_answers_a_line() -> None:
    conversation = Conversation("demo")
    conversation.ask("hi")
    for notice in (
        notices.resume_gap("demo", 3, 1, 0),
        notices.skipped(2, [("demo", 4, 5)]),
        notices.too_many_subscriptions("demo", 128),
    ):
        outcome = conversation.receive(frame(notice))
        assert not outcome.answers and outcome.notice is not None, notice
    assert not conversation.receive(frame(protocol.agent_response_start("demo"))).answers
    assert conversation.receive(frame(protocol.agent_response_end("demo"))).answers
    conversation.ask("again")
    assert conversation.receive(frame(protocol.server_error("busy: too many requests"))).answers


def test_a_line_that_reached_the_agent_is_not_sent_again_after_a_drop() -> None:
    conversation = Conversation("demo")
    conversation.ask("not yet received")
    assert not conversation.interrupted()  # no reply began: send it again
    conversation.ask("received")
    conversation.receive(frame(protocol.agent_response_start("demo")))
    assert conversation.interrupted()
