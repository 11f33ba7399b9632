"""What ``agentcast client`` makes of the frames it receives, with no I/O.

``Conversation`` sorts frames into replies (stdout: the conversation itself), notices
(stderr: about the conversation) and answers to the request in flight, and keeps the
agent's last ``seq`` across reconnects, so a resume prints nothing twice. A notice
(``agentcast.notices``) is never an answer; ``channel_restarted`` means the agent's
numbering started again, and so does the count here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agentcast import notices
from agentcast.memgpt import protocol
from agentcast.printable import for_terminal

__all__ = ["Conversation", "Outcome", "describe"]

# Server errors about the stream, not answers to a request.
NOTICE_CODES = notices.GAP_CODES | {notices.SKIPPED}
# What ends the reply to a line the user typed.
LINE_ANSWERS = frozenset({"agent_response_end", "agent_response_error", "server_error"})


def describe(frame: dict[str, Any]) -> str:
    """One frame as the line the client prints for it, terminal escapes shown, not obeyed
    (an agent others share can write anything into its messages)."""
    kind = frame.get("type")
    if kind == "agent_response":
        line = f"[{frame.get('message_type')}] {frame.get('message')}"
    elif kind in ("agent_response_start", "agent_response_end"):
        line = f"-- {kind} --"
    else:
        line = f"[{kind}] {frame.get('message') or frame.get('status') or ''}"
    return for_terminal(line)


@dataclass(frozen=True)
class Outcome:
    """What to do with one frame."""

    reply: str | None = None  # print on stdout
    notice: str | None = None  # print on stderr
    answers: bool = False  # the request in flight has its answer


class Conversation:
    """One agent's conversation over any number of connections, one request at a time."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.last_seq: int | None = None  # the agent's last message printed
        self.request: Literal["line", "resume"] | None = None  # the request in flight
        self._started = False  # the line in flight reached the agent (agent_response_start)

    def ask(self, line: str) -> bytes:
        """The request for a line the user typed."""
        self.request, self._started = "line", False
        return protocol.user_message(line, self.agent_id)

    def resume(self) -> bytes | None:
        """On a new connection: the subscribe that replays what was missed, if anything was
        printed before."""
        if self.last_seq is None:
            return None
        self.request = "resume"
        return protocol.subscribe(self.agent_id, self.last_seq)

    def interrupted(self) -> bool:
        """The connection dropped. True if the line in flight reached the agent: sending it
        again would run it twice, so it counts as answered (the resume replays the rest)."""
        reached = self.request == "line" and self._started
        self.request = None
        return reached

    def receive(self, frame: dict[str, Any]) -> Outcome:
        kind = frame.get("type")
        if kind == "agent_response":
            return Outcome(reply=describe(frame)) if self._is_new(frame) else Outcome()
        if kind == "server_error" and frame.get("code") in NOTICE_CODES:
            return Outcome(notice=self._notice(frame))
        if self.request == "resume" and kind in ("command_response", "server_error"):
            self.request = None  # the subscribe's ack (nothing to print) or its refusal
            if kind == "command_response":
                return Outcome(answers=True)
            return Outcome(notice=f"cannot resume {self.agent_id}: {describe(frame)}", answers=True)
        if frame.get("code") == notices.TOO_MANY_SUBSCRIPTIONS:
            return Outcome(notice=describe(frame))  # a line's step runs all the same
        if kind == "agent_response_start" and self.request == "line":
            self._started = True
        elif kind in LINE_ANSWERS and self.request == "line":
            self.request = None
            return Outcome(reply=describe(frame), answers=True)
        return Outcome(reply=describe(frame))

    def _is_new(self, frame: dict[str, Any]) -> bool:
        """False for a message of this agent printed before (replayed by a resume)."""
        seq = frame.get("seq")
        if frame.get("agent_id") != self.agent_id or not isinstance(seq, int):
            return True
        if self.last_seq is not None and seq <= self.last_seq:
            return False
        self.last_seq = seq
        return True

    def _notice(self, frame: dict[str, Any]) -> str:
        if (
            frame.get("agent_id") == self.agent_id
            and frame.get("code") == notices.CHANNEL_RESTARTED
        ):
            before, first = self.last_seq, frame.get("first_seq")
            self.last_seq = first - 1 if isinstance(first, int) and first > 0 else 0
            return (
                f"{self.agent_id}'s numbering restarted on the server (this client had seen up"
                f" to seq {before}): counting again from {self.last_seq + 1}"
            )
        return describe(frame)
