"""``agentcast client``: an interactive client like MemGPT's example. Type a line, see the
agent's replies; Ctrl-D quits, Ctrl-C quits at once (exit code 130).

In agentcast's native protocol (the default) it prints the agent's runs as they stream
(``agentcast.client.chat``); in MemGPT's (``protocol="memgpt"``, for MemGPT's own servers)
whole messages, as here. Either way a background reader prints every frame as it comes,
so a server that goes away is noticed while the user is idle, not when the next line is
typed. The client reconnects (``retries`` failures in a row with exponential backoff,
then exit code 1), resumes the agent's stream from the last ``seq`` it printed, and sends
a line typed meanwhile once connected again; a first connection that no retry can fix
(``agentcast.client.failures``) ends it at once, and so does a ``forbidden`` reply (exit
code 1 either way). The conversation goes to stdout; the
client's own status lines (connected, reconnecting, notices about the stream) to stderr.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any, Literal, TypeVar

import orjson
import websockets
from websockets.exceptions import InvalidStatus

from agentcast.client.chat import chat
from agentcast.client.conversation import Conversation
from agentcast.client.failures import forbidden, refusal_hint, unfixable
from agentcast.client.typed_lines import TypedLines
from agentcast.printable import for_terminal

__all__ = ["DEFAULT_URL", "PROTOCOLS", "run_client"]

DEFAULT_URL = "ws://127.0.0.1:8282/"
CLOSE_TIMEOUT = 1.0  # seconds to wait for the server's close frame when quitting
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
PROTOCOLS = ("agentcast", "memgpt")
Protocol = Literal["agentcast", "memgpt"]
T = TypeVar("T")


def _say(line: str) -> None:
    """A line about the connection on stderr; what the server wrote in it (a close reason,
    a notice) may hold terminal escapes: shown, not obeyed."""
    print(f"agentcast client: {for_terminal(line)}", file=sys.stderr, flush=True)


class _Exit(Exception):
    """Stop the client with this exit code, after saying why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Closed(Exception):
    """The connection closed while the client waited on it."""


def _refusal(status: int) -> bool:
    """An upgrade refused for good (no or bad token, wrong path): trying again cannot help.
    429 (too fast) and 5xx (busy, full) may pass later."""
    return 400 <= status < 500 and status != HTTPStatus.TOO_MANY_REQUESTS


class _Dialer:
    """Connects to one URL, retrying ``retries`` failures in a row with exponential backoff."""

    def __init__(
        self,
        url: str,
        retries: int,
        backoff: float,
        tls: ssl.SSLContext | None,
        token: str | None,
    ) -> None:
        self.url = url
        self.token = token
        self.shown = url.partition("?")[0]  # never a ?token= on the terminal
        self.retries = retries
        self.backoff = backoff
        self.options: dict[str, Any] = {"close_timeout": CLOSE_TIMEOUT}
        if tls is not None:  # no ssl=None for wss://: that would turn TLS off
            self.options["ssl"] = tls
        if token is not None:
            self.options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        self.connected_before = False

    async def connect(self) -> websockets.ClientConnection:
        failures = 0
        while True:
            try:
                websocket = await websockets.connect(self.url, **self.options)
            except InvalidStatus as exc:
                failure = self._refused(exc)
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
                failure = str(exc) or type(exc).__name__
                if not self.connected_before:
                    reason = await unfixable(self.url, exc)
                    if reason is not None:
                        raise _Exit(1, f"cannot connect to {self.shown}: {reason}") from exc
                    if failures == 0:
                        _say(f"cannot connect to {self.shown}: {failure} (retrying)")
            else:
                if self.connected_before:
                    _say("reconnected")
                else:
                    _say(f"connected to {self.shown}; type a message, Ctrl-D to quit")
                self.connected_before = True
                return websocket
            failures += 1
            if failures > self.retries:
                raise _Exit(1, f"giving up on {self.shown} after {failures} attempts: {failure}")
            await asyncio.sleep(self.backoff * 2 ** (failures - 1))

    def _refused(self, exc: InvalidStatus) -> str:
        """What an HTTP answer to the upgrade says; raises ``_Exit`` if it is final."""
        response = exc.response
        because = response.body.decode("utf-8", "replace").strip().splitlines()[:1] or [""]
        failure = f"HTTP {response.status_code} {response.reason_phrase}"
        if because[0]:
            failure += f" ({because[0][:200]})"
        if not _refusal(response.status_code):
            return failure
        hint = refusal_hint(response.status_code, self.url, self.token)
        raise _Exit(1, f"{self.shown} refused the connection: {failure}{hint}")


class _Link:
    """One connection. A background task reads every frame as it comes, prints what the
    conversation makes of it, and wakes the request waiting for its answer."""

    def __init__(self, websocket: websockets.ClientConnection, conversation: Conversation):
        self.websocket = websocket
        self.conversation = conversation
        self.forbidden: str | None = None  # a forbidden reply ended the reader: why
        self._answered = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.websocket:
                try:
                    frame = orjson.loads(message)
                except orjson.JSONDecodeError:
                    frame = None
                if not isinstance(frame, dict):
                    _say(f"not a JSON object from the server: {message[:80]!r}")
                    continue
                self.forbidden = forbidden(frame)
                if self.forbidden is not None:
                    return
                outcome = self.conversation.receive(frame)
                if outcome.reply is not None:
                    print(outcome.reply, flush=True)
                if outcome.notice is not None:
                    _say(outcome.notice)
                if outcome.answers:
                    self._answered.set()
        except websockets.ConnectionClosed:
            pass  # an abnormal close; the reader ends either way

    async def request(self, data: bytes) -> None:
        """Send ``data`` and wait for its answer; ``_Closed`` if the connection closes first."""
        self._answered.clear()
        await self.websocket.send(data.decode())
        await self.watching(self._answered.wait())

    async def watching(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, or ``_Closed`` (and it cancelled) if the connection
        closes first."""
        waiter = asyncio.ensure_future(awaitable)
        await asyncio.wait({waiter, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        raise _Closed

    def why_closed(self) -> str:
        code, reason = self.websocket.close_code, self.websocket.close_reason
        if code is None:
            return "the connection dropped"
        return f"the server closed the connection ({code}{f' {reason}' if reason else ''})"

    async def close(self) -> None:
        await self.websocket.close()
        await self._reader


async def _connect(
    dialer: _Dialer, typed: TypedLines, pending: str | None
) -> tuple[websockets.ClientConnection, str | None] | None:
    """Connect, taking the next typed line meanwhile if none is pending: the connection
    and the line to send on it, or None if the input ended first with nothing to send
    (Ctrl-D quits while the server is away). The first connection is made whatever the
    input does, so that input which ends at once (``< /dev/null``) still says whether the
    server could be reached, as the native protocol's client does."""
    connecting = asyncio.ensure_future(dialer.connect())
    if not dialer.connected_before:
        return await connecting, pending
    while pending is None and not typed.ended:
        reading = asyncio.ensure_future(typed.get())
        await asyncio.wait({connecting, reading}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            reading.cancel()
            break
        pending = reading.result()
    if pending is None and typed.ended and not connecting.done():
        connecting.cancel()
        return None
    return await connecting, pending


async def _chat(
    url: str,
    agent_id: str,
    retries: int,
    backoff: float,
    tls: ssl.SSLContext | None,
    token: str | None,
) -> int:
    typed = TypedLines(sys.stdin.fileno(), asyncio.get_running_loop())
    conversation = Conversation(agent_id)
    dialer = _Dialer(url, retries, backoff, tls, token)
    pending: str | None = None  # typed and not yet answered: never lost to a reconnect
    while True:
        connected = await _connect(dialer, typed, pending)
        if connected is None:
            return 0
        websocket, pending = connected
        link = _Link(websocket, conversation)
        try:
            resume = conversation.resume()
            if resume is not None:
                await link.request(resume)
            while True:
                if pending is None:
                    pending = await link.watching(typed.get())
                    if pending is None:
                        return 0  # Ctrl-D, or the end of piped input
                if pending:
                    await link.request(conversation.ask(pending))
                pending = None
        except (_Closed, websockets.ConnectionClosed):
            if link.forbidden is not None:
                raise _Exit(1, link.forbidden) from None
            if conversation.interrupted():
                pending = None
                _say("the connection dropped during the reply; the agent has the line: not resent")
            _say(f"{link.why_closed()}; reconnecting...")
        finally:
            await link.close()


def run_client(
    url: str,
    agent_id: str,
    retries: int = 5,
    backoff: float = 0.5,
    tls: ssl.SSLContext | None = None,
    protocol: Protocol = "agentcast",
    token: str | None = None,
) -> int:
    """Chat until stdin ends; ``tls`` verifies a ``wss://`` server (default: the system's CAs);
    ``token`` goes in an ``Authorization: Bearer`` header (out of ``ps`` and shell history).
    The exit code: 0 at the end of input, 1 if the server cannot be reached, refuses or
    forbids, 130 on Ctrl-C."""
    talk = chat if protocol == "agentcast" else _chat
    try:
        return asyncio.run(talk(url, agent_id, retries, backoff, tls, token))
    except _Exit as exc:
        _say(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
