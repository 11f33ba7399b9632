"""The producer side of a run: what agent code calls, from any thread or event loop.

``with hub.run(channel) as run:`` sends ``run_start``; leaving the block sends ``run_end``
(``outcome="success"``), or ``run_error`` when the block raised. Inside it::

    with run.message(role="assistant") as msg:   # message_start ... message_end
        msg.delta("Hel")
        msg.delta("lo")
    with run.tool_call("search") as call:         # tool_call_start ... tool_call_end
        call.delta('{"q": "weather"}')
    run.tool_result(call.id, "sunny")

Each call checks its event and hands it to ``emit`` (``Broadcaster.publish_event`` or a
Redis ``Publisher``'s): an O(1) queue append, as ``publish`` is, never a wait on clients.
The ``async with`` forms are the same objects: nothing here blocks, so nothing needs
awaiting. With ``rollup`` (seconds, default 0), the deltas of one message or tool call
that come within that time of the first are sent as one: fewer events and frames for
every watcher, for a latency of at most ``rollup``. One run, message or tool call
belongs to one producer: calls on it from several threads at once would interleave its
deltas in no defined order.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any

from agentcast.streams.events import MESSAGE_KINDS, BadEvent, check_channel, check_event

__all__ = ["Emit", "MessageStream", "Run", "ToolCallStream", "new_id"]

Emit = Callable[[dict[str, Any], Any], None]  # (event, channel): a hub's publish_event
# (delay, callback): call ``callback`` once, ``delay`` s from now, on another thread
Schedule = Callable[[float, Callable[[], None]], None]

_PREFIX = os.urandom(4).hex()  # ids unique across processes without a uuid per delta
_counter = itertools.count(1)


def new_id(kind: str) -> str:
    """A fresh id such as ``msg-1a2b3c4d-17``: unique in this process, unlikely to clash
    with another's."""
    return f"{kind}-{_PREFIX}-{next(_counter)}"


class _Stream:
    """What a message and a tool call share: one id, deltas, one end."""

    _kind = ""
    _id_field = ""

    def __init__(
        self,
        emit: Emit,
        channel: Hashable,
        stream_id: str,
        rollup: float = 0.0,
        schedule: Schedule | None = None,
    ) -> None:
        self._emit = emit
        self._channel = channel
        self.id = stream_id
        self.ended = False
        self._rollup = rollup
        self._schedule = schedule
        self._pieces: list[str] = []  # held for the rollup window
        self._lock = threading.Lock()  # the window's timer sends from another thread

    def delta(self, text: str) -> None:
        """Append ``text`` (may be empty) to the stream."""
        if self.ended:
            raise BadEvent(f"{self._kind} {self.id!r} has ended: no more deltas")
        if not isinstance(text, str):
            raise BadEvent(f"a delta is a str, not {type(text).__name__}")
        if not self._rollup:
            self._send_delta(text)
            return
        with self._lock:
            self._pieces.append(text)
            first = len(self._pieces) == 1
        if first:
            assert self._schedule is not None
            self._schedule(self._rollup, self._flush)

    def end(self) -> None:
        """Close the stream (once; a second call does nothing)."""
        if not self.ended:
            self.ended = True
            self._flush()
            self._emit({"type": f"{self._kind}_end", self._id_field: self.id}, self._channel)

    def _flush(self) -> None:
        """Send what the rollup window holds as one delta (under the lock: a delta sent
        by the timer and the end sent by the producer keep their order)."""
        with self._lock:
            if self._pieces:
                self._send_delta("".join(self._pieces))
                self._pieces.clear()

    def _send_delta(self, text: str) -> None:
        self._emit({"type": f"{self._kind}_delta", self._id_field: self.id, "delta": text},
                   self._channel)  # fmt: skip

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()

    async def __aenter__(self) -> _Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.end()


class MessageStream(_Stream):
    """A text or reasoning message, streamed as deltas."""

    _kind = "message"
    _id_field = "message_id"

    def __enter__(self) -> MessageStream:
        return self

    async def __aenter__(self) -> MessageStream:
        return self


class ToolCallStream(_Stream):
    """A tool call, its arguments streamed as deltas (usually pieces of JSON)."""

    _kind = "tool_call"
    _id_field = "tool_call_id"

    def __enter__(self) -> ToolCallStream:
        return self

    async def __aenter__(self) -> ToolCallStream:
        return self


class Run:
    """One run of an agent on a channel: its boundaries, messages, tool calls and state.

    ``prompt``: the user's message the run answers, sent in its ``run_start`` so that
    whoever watches the channel (live or from its history) sees what each run answers.
    """

    def __init__(
        self,
        emit: Emit,
        channel: Hashable,
        run_id: str | None = None,
        thread_id: str | None = None,
        rollup: float = 0.0,
        schedule: Schedule | None = None,
        prompt: str | None = None,
    ) -> None:
        if channel is None:
            raise ValueError("a run needs a channel")
        check_channel(channel)
        if rollup < 0 or (rollup and schedule is None):
            raise ValueError("rollup must be >= 0 (and needs a hub that can schedule)")
        self._rollup = rollup
        self._schedule = schedule
        self._emit = emit
        self.channel = channel
        self.id = run_id or new_id("run")
        self.thread_id = thread_id
        self.prompt = prompt
        self.started = self.ended = False

    def start(self) -> Run:
        """Send ``run_start`` (``with`` does it)."""
        if self.started:
            raise BadEvent(f"run {self.id!r} has started already")
        self.started = True
        event: dict[str, Any] = {"type": "run_start", "run_id": self.id}
        if self.thread_id is not None:
            event["thread_id"] = self.thread_id
        if self.prompt is not None:
            event["prompt"] = self.prompt
        self._send(event)
        return self

    def end(self, outcome: str = "success", usage: dict[str, Any] | None = None) -> None:
        """Send ``run_end`` (``with`` does it); ``usage``: token counts, for instance."""
        event: dict[str, Any] = {"type": "run_end", "run_id": self.id, "outcome": outcome}
        if usage is not None:
            event["usage"] = usage
        self._finish(event)

    def error(self, message: str) -> None:
        """Send ``run_error``: the run ended by failing (``with`` does it on an exception)."""
        self._finish({"type": "run_error", "run_id": self.id, "message": message})

    def message(
        self, role: str = "assistant", kind: str = "text", message_id: str | None = None
    ) -> MessageStream:
        """Start a message (``kind``: "text" or "reasoning"); stream it with ``delta``."""
        if kind not in MESSAGE_KINDS:
            raise BadEvent(f"kind must be one of {MESSAGE_KINDS}, not {kind!r}")
        stream = MessageStream(
            self._emit, self.channel, message_id or new_id("msg"), self._rollup, self._schedule
        )
        self._send({"type": "message_start", "message_id": stream.id, "role": role, "kind": kind})
        return stream

    def say(
        self,
        content: str,
        role: str = "assistant",
        kind: str = "text",
        message_id: str | None = None,
    ) -> str:
        """Send a whole message in one event; returns its id."""
        message_id = message_id or new_id("msg")
        self._send({"type": "message", "message_id": message_id, "role": role, "kind": kind,
                    "content": content})  # fmt: skip
        return message_id

    def tool_call(
        self, name: str, tool_call_id: str | None = None, parent_message_id: str | None = None
    ) -> ToolCallStream:
        """Start a tool call; stream its arguments with ``delta``."""
        stream = ToolCallStream(
            self._emit, self.channel, tool_call_id or new_id("call"), self._rollup, self._schedule
        )
        event: dict[str, Any] = {"type": "tool_call_start", "tool_call_id": stream.id, "name": name}
        if parent_message_id is not None:
            event["parent_message_id"] = parent_message_id
        self._send(event)
        return stream

    def tool_result(self, tool_call_id: str, content: str) -> None:
        self._send({"type": "tool_result", "tool_call_id": tool_call_id, "content": content})

    def step(self, name: str) -> _Step:
        """``with run.step("plan"):`` sends ``step_start`` and ``step_end`` around the block."""
        return _Step(self, name)

    def state_snapshot(self, snapshot: Any) -> None:
        """The whole shared state (JSON-serializable); patches apply to the last one."""
        self._send({"type": "state_snapshot", "snapshot": snapshot})

    def state_patch(self, patch: list[dict[str, Any]]) -> None:
        """RFC 6902 operations on the state."""
        self._send({"type": "state_patch", "patch": patch})

    def custom(self, name: str, value: Any = None) -> None:
        self._send({"type": "custom", "name": name, "value": value})

    def _send(self, event: dict[str, Any]) -> None:
        if self.ended:
            raise BadEvent(f"run {self.id!r} has ended: no more events")
        self._emit(check_event(event), self.channel)

    def _finish(self, event: dict[str, Any]) -> None:
        if not self.ended:
            self._send(event)
            self.ended = True

    def __enter__(self) -> Run:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end()
        else:
            self.error(f"{exc_type.__name__ if exc_type else 'error'}: {exc}")

    async def __aenter__(self) -> Run:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


class _Step:
    def __init__(self, run: Run, name: str) -> None:
        self._run = run
        self.name = name

    def __enter__(self) -> _Step:
        self._run._send({"type": "step_start", "run_id": self._run.id, "step": self.name})
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._run._send({"type": "step_end", "run_id": self._run.id, "step": self.name})

    async def __aenter__(self) -> _Step:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()
