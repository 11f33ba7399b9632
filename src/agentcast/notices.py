"""What the server tells a client about its stream itself: gaps, restarts, skips, limits.

The server's, not MemGPT's: the fan-out core, the Redis backplane, ``agentcast client``
and the live page share these. Each is a ``server_error`` frame (a type every MemGPT
client already shows) with a ``code`` that names one condition, so no reader has to
guess which one it got:

- ``history_trimmed``: a resume (``subscribe`` with ``since``) asked for messages that
  are no longer kept; ``first_seq`` is the oldest kept.
- ``channel_restarted``: the channel's numbering started again at 1 (its history was
  freed while nobody watched it, or the backplane lost its state); ``restarted`` is true.
- ``backplane_gap``: seqs ``from_seq``..``to_seq`` were lost by the backplane.
- ``broadcasts_lost``: broadcasts (to every client) were lost by the backplane.
- ``skipped``: a slow client was not sent ``skipped`` messages, listed as seq ranges.
- ``too_many_subscriptions``: a subscribe over the per-connection limit was refused.
- ``too_many_channels``: a subscribe to a new channel was refused: the server holds its
  ``max_channels``, every one of them watched.

Builders are pure functions returning the frame's JSON; the core frames what they
return and never builds a notice itself.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "BACKPLANE_GAP",
    "BROADCASTS_LOST",
    "CHANNEL_RESTARTED",
    "GAP_CODES",
    "HISTORY_TRIMMED",
    "NOTICES",
    "SKIPPED",
    "TOO_MANY_CHANNELS",
    "TOO_MANY_SUBSCRIPTIONS",
    "Notices",
    "backplane_gap",
    "broadcasts_lost",
    "channel_restarted",
    "resume_gap",
    "skipped",
    "too_many_channels",
    "too_many_subscriptions",
]

HISTORY_TRIMMED: Final = "history_trimmed"
CHANNEL_RESTARTED: Final = "channel_restarted"
BACKPLANE_GAP: Final = "backplane_gap"
BROADCASTS_LOST: Final = "broadcasts_lost"
SKIPPED: Final = "skipped"
TOO_MANY_SUBSCRIPTIONS: Final = "too_many_subscriptions"
TOO_MANY_CHANNELS: Final = "too_many_channels"
GAP_CODES: Final = frozenset({HISTORY_TRIMMED, CHANNEL_RESTARTED, BACKPLANE_GAP, BROADCASTS_LOST})
"""The notices that say some of a stream will never come (a resume cannot fetch it)."""

HISTORY_FREED: Final = (
    "a channel left idle is freed with its history, and its numbering starts again at 1; "
    "the oldest history goes first when the server holds too much"
)


def _notice(code: str, message: str, **fields: Any) -> bytes:
    """A notice; one about a channel names it as ``channel`` and, for MemGPT's clients,
    whose channels are agents, as ``agent_id`` too."""
    if "agent_id" in fields:
        fields["channel"] = fields["agent_id"]
    return orjson.dumps({"type": "server_error", "code": code, "message": message, **fields})


def resume_gap(channel: Hashable, since: int, first_seq: int, last_seq: int) -> bytes:
    """A resume after ``since`` that the channel's history cannot serve whole: trimmed
    (``history_trimmed``), or, when ``since`` is past the channel's last seq, numbered
    anew since the client saw it (``channel_restarted``)."""
    if since > last_seq:
        return _notice(
            CHANNEL_RESTARTED,
            f"you asked for messages after seq {since}, but this channel's last seq is "
            f"{last_seq}: its numbering started again since you saw it ({HISTORY_FREED})",
            agent_id=channel,
            first_seq=first_seq,
            last_seq=last_seq,
            restarted=True,
        )
    return _notice(
        HISTORY_TRIMMED,
        f"messages {since + 1} to {first_seq - 1} are no longer kept; history starts at "
        f"{first_seq} ({HISTORY_FREED})",
        agent_id=channel,
        first_seq=first_seq,
        last_seq=last_seq,
    )


def backplane_gap(channel: Hashable, from_seq: int, to_seq: int) -> bytes:
    """Seqs ``from_seq..to_seq`` of a channel were lost by the backplane: they never come."""
    return _notice(
        BACKPLANE_GAP,
        f"messages {from_seq} to {to_seq} were lost by the backplane",
        agent_id=channel,
        from_seq=from_seq,
        to_seq=to_seq,
        first_seq=to_seq + 1,
    )


def channel_restarted(channel: Hashable, last_seq: int) -> bytes:
    """The backplane lost a channel's state after ``last_seq``; its numbering restarts at 1."""
    return _notice(
        CHANNEL_RESTARTED,
        f"the backplane lost this channel's state after seq {last_seq}; numbering starts "
        "again at 1",
        agent_id=channel,
        from_seq=last_seq + 1,
        first_seq=1,
        restarted=True,
    )


def skipped(count: int, ranges: Sequence[tuple[Hashable, int, int]]) -> bytes:
    """A slow client was skipped ``count`` messages; ``ranges``: (channel, from, to) seqs."""
    return _notice(
        SKIPPED,
        f"you fell behind: {count} messages were not sent; resubscribe with since to fetch "
        "those still kept",
        skipped=count,
        ranges=[
            {"agent_id": channel, "from_seq": first, "to_seq": last}
            for channel, first, last in ranges
        ],
    )


def too_many_subscriptions(channel: Hashable, limit: int) -> bytes:
    """A subscribe refused: the client already holds ``limit`` subscriptions."""
    return _notice(
        TOO_MANY_SUBSCRIPTIONS,
        f"not subscribed: at most {limit} subscriptions per connection; unsubscribe from "
        "another channel first",
        agent_id=channel,
        limit=limit,
    )


def too_many_channels(channel: Hashable, limit: int) -> bytes:
    """A subscribe refused: the server holds ``limit`` channels, all of them watched."""
    return _notice(
        TOO_MANY_CHANNELS,
        f"not subscribed: the server holds its limit of {limit} channels, all of them "
        "watched; try again later",
        agent_id=channel,
        limit=limit,
    )


def broadcasts_lost(last_seq: int, first_seq: int) -> bytes:
    """To every client: the backplane lost the broadcasts after ``last_seq`` (its own
    numbering of broadcasts, which clients never see) and before ``first_seq`` (0: it
    lost its numbering and starts again at 1). It arrives where they would have been."""
    fields: dict[str, Any] = {"agent_id": None, "from_seq": last_seq + 1}
    if first_seq:
        message = f"{first_seq - last_seq - 1} broadcasts were lost by the backplane"
        fields.update(to_seq=first_seq - 1, first_seq=first_seq)
    else:
        message = "the backplane lost its broadcasts' state; some broadcasts may be lost"
        fields.update(first_seq=1, restarted=True)
    return _notice(BROADCASTS_LOST, message, **fields)


@dataclass(frozen=True)
class Notices:
    """The notice builders a ``FanoutCore`` is handed: it only frames what they return."""

    history_gap: Callable[[Hashable, int, int, int], bytes] = resume_gap
    backplane_gap: Callable[[Hashable, int, int], bytes] = backplane_gap
    restarted: Callable[[Hashable, int], bytes] = channel_restarted
    skipped: Callable[[int, Sequence[tuple[Hashable, int, int]]], bytes] = skipped
    too_many_subscriptions: Callable[[Hashable, int], bytes] = too_many_subscriptions
    too_many_channels: Callable[[Hashable, int], bytes] = too_many_channels


NOTICES: Final = Notices()
