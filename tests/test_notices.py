"""The notices name a channel in words that fit any channel, and say what happened."""

from __future__ import annotations

import orjson

from agentcast import notices


def test_a_resume_ahead_of_the_channel_says_its_numbering_restarted() -> None:
    notice = orjson.loads(notices.resume_gap("room", 99, 1, 6))
    assert notice["code"] == notices.CHANNEL_RESTARTED
    assert notice["channel"] == notice["agent_id"] == "room"  # added; agent_id kept
    assert (notice["first_seq"], notice["last_seq"], notice["restarted"]) == (1, 6, True)
    message = notice["message"]
    assert "after seq 99" in message and "last seq is 6" in message
    assert "no longer kept" not in message and "channel_ttl" not in message


def test_a_trimmed_resume_says_which_messages_are_gone() -> None:
    notice = orjson.loads(notices.resume_gap("room", 2, 5, 9))
    assert notice["code"] == notices.HISTORY_TRIMMED and notice["channel"] == "room"
    assert notice["message"].startswith("messages 3 to 4 are no longer kept")
    assert "channel_ttl" not in notice["message"] and "agent" not in notice["message"]


def test_every_notice_about_a_channel_names_it_as_channel() -> None:
    for raw in (
        notices.backplane_gap("room", 3, 4),
        notices.channel_restarted("room", 7),
        notices.too_many_subscriptions("room", 128),
        notices.too_many_channels("room", 10),
    ):
        notice = orjson.loads(raw)
        assert notice["channel"] == notice["agent_id"] == "room", notice
