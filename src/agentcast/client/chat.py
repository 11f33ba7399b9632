"""``agentcast client`` over agentcast's native protocol: the agent's runs printed as they
stream, each piece flushed as it comes. ``agentcast.Client`` holds the connection:
reconnects with jittered backoff, resumes each channel after the last seq seen, drops
what comes twice.

A reader task prints every event and notice as it arrives, so a run of another watcher,
or a server going away, shows while the user is idle. The main task hands the typed
lines to the agent one at a time: the next goes once the last is answered
(``agent_response_end``) or its connection dropped. A line whose connection dropped
before the agent took it (``agent_response_start``) is sent again on the next one; a line
the agent took is not (the rest of its run comes with the resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import Awaitable
from typing import Final, TypeVar

from agentcast.client.failures import forbidden, refusal_hint
from agentcast.client.printer import Output, StreamPrinter
from agentcast.client.stream import (
    CannotConnect,
    Client,
    ConnectionLost,
    ConnectionStatus,
    UpgradeRefused,
)
from agentcast.client.typed_lines import TypedLines
from agentcast.printable import for_terminal

__all__ = ["BACKOFF_CAP", "chat"]

BACKOFF_CAP: Final = 30.0
"""The longest wait between two reconnects, in seconds (unless ``--backoff`` is longer)."""
T = TypeVar("T")


def say(line: str) -> None:
    """A line about the connection on stderr (what the server wrote in it: escaped)."""
    print(f"agentcast client: {for_terminal(line)}", file=sys.stderr, flush=True)


class _Wake:
    """Wakes whoever waits for the line's answer or the connection's fate to change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class _Session:
    """What the reader, the status callback and the line in flight share."""

    def __init__(self, url: str, agent_id: str) -> None:
        self.shown = url.partition("?")[0]  # never a ?token= on the terminal
        self.printer = StreamPrinter(agent_id)
        self.wake = _Wake()
        self.failures = 0  # every failure or drop so far
        self.last_failure = ConnectionStatus(False, 0, 0)
        self.started = False  # the line in flight reached the agent
        self.answered = False  # the line in flight has its answer

    def status(self, status: ConnectionStatus) -> None:
        """``Client(on_status=...)``: say what happened to the connection."""
        line = ""
        if status.connected:
            self.printer.connected()
            first = status.connections == 1
            line = (
                f"connected to {self.shown}; type a message, Ctrl-D to quit"
                if first
                else "reconnected"
            )
        else:
            self.failures += 1
            self.last_failure = status
            if status.failures == 1 and status.connections == 0:
                line = f"cannot connect to {self.shown}: {status.reason} (retrying)"
            elif status.failures == 1:
                line = f"{status.reason}; reconnecting..."
        if line:
            self.write(Output(err=line))
        self.wake()

    def write(self, output: Output) -> None:
        if output.err is not None:
            output = Output(output.out + self.printer.break_line(), output.err)
        if output.out:
            sys.stdout.write(output.out)
            sys.stdout.flush()
        if output.err is not None:
            say(output.err)


class _StreamOver(Exception):
    """The server ended the stream (a close with 1000)."""


class _Forbidden(Exception):
    """The server refused a request for good: the token does not allow it."""


async def _read(client: Client, session: _Session) -> None:
    """Print what comes, as it comes; mark the line in flight started or answered."""
    async for item in client:
        refused = forbidden(item)
        if refused is not None:
            raise _Forbidden(refused)
        output = session.printer.receive(item)
        session.write(output)
        session.started |= output.started
        session.answered |= output.answers
        if output.started or output.answers:
            session.wake()


async def _unless_over(awaitable: Awaitable[T], reader: asyncio.Task[None]) -> T:
    """``awaitable``'s result; once the reader has ended, what ended it (or ``_StreamOver``),
    even if ``awaitable`` ended with it (a send fails when the client gives up)."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.wait({task, reader}, return_when=asyncio.FIRST_COMPLETED)
    if not reader.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    reader.result()  # raises what ended it
    raise _StreamOver


async def _connected_once(client: Client, session: _Session, reader: asyncio.Task[None]) -> None:
    """Until the first connection holds, so that input which ends at once (``< /dev/null``)
    still says whether the server could be reached: 1 and a hint if not, not a silent 0."""
    while not client.connected:
        await _unless_over(session.wake.wait(), reader)


async def _ask(client: Client, text: str, session: _Session, reader: asyncio.Task[None]) -> None:
    """Send ``text`` and wait for its answer, or for its connection to drop."""
    while True:
        session.started = session.answered = False
        await _unless_over(client.send(text), reader)
        session.printer.line_sent()
        failures = session.failures
        while not session.answered and session.failures == failures:
            await _unless_over(session.wake.wait(), reader)
        if session.answered:
            return
        if session.started:
            say("the connection dropped during the reply; the agent has the line: not resent")
            return


async def chat(
    url: str,
    agent_id: str,
    retries: int,
    backoff: float,
    tls: ssl.SSLContext | None,
    token: str | None,
) -> int:
    """Chat until stdin ends (0); 1 if the server refuses, forbids or cannot be reached."""
    session = _Session(url, agent_id)
    longest = max(backoff, min(backoff * 2.0 ** min(retries, 32), BACKOFF_CAP), 1e-3)
    client = Client(
        url,
        agent_id,
        backoff=(backoff, longest),
        max_retries=retries,
        notices=True,
        tls=tls,
        token=token,
        on_status=session.status,
        fail_fast=True,
    )
    typed = TypedLines(sys.stdin.fileno(), asyncio.get_running_loop())
    reader = asyncio.create_task(_read(client, session))
    try:
        await _connected_once(client, session, reader)
        while (text := await _unless_over(typed.get(), reader)) is not None:
            if text:
                await _ask(client, text, session, reader)
        return 0
    except _StreamOver:
        say(f"{session.shown} ended the stream")
        return 0
    except UpgradeRefused as exc:  # the Client's hint names its API; a user has options
        say(exc.refusal + refusal_hint(exc.status, url, token))
        return 1
    except (CannotConnect, _Forbidden) as exc:
        say(str(exc))
        return 1
    except ConnectionLost:
        failure = session.last_failure
        say(f"giving up on {session.shown} after {failure.failures} attempts: {failure.reason}")
        return 1
    finally:
        reader.cancel()
        await client.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
