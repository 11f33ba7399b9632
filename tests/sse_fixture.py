"""A tiny SSE server on 127.0.0.1 that answers each path with canned bytes: the stand-in for
agentcast's endpoints when the JS clients' harness is tested on its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

STOP_GRACE = 5.0  # seconds a connection may take to finish once the server stops


def sse_event(data: str, event_id: int | None = None) -> bytes:
    """One SSE event, LF only (AG-UI's parser splits on ``\\n\\n`` alone)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {data}\n\n".encode()


def sse_stream(events: list[dict[str, Any]], done: bool = False) -> bytes:
    """``events`` as SSE with ``id: 1, 2, ...``, and ``data: [DONE]`` last when ``done``."""
    body = b"".join(
        sse_event(json.dumps(event, separators=(",", ":")), seq)
        for seq, event in enumerate(events, 1)
    )
    return body + sse_event("[DONE]") if done else body


@dataclass(frozen=True)
class Canned:
    """A response: ``status`` and ``body``; with ``stays_open`` the connection is held
    after the body until the client closes it, as a live watch would be."""

    body: bytes = b""
    status: int = 200
    stays_open: bool = False

    def head(self) -> bytes:
        status = HTTPStatus(self.status)
        lines = [f"HTTP/1.1 {status.value} {status.phrase}", "Connection: close"]
        if status != HTTPStatus.NO_CONTENT:
            lines += ["Content-Type: text/event-stream", "Cache-Control: no-cache"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


NOT_FOUND = Canned(b"no such path", status=404)


@dataclass
class SSEServer:
    """What a test reads back: the base ``url`` and the head of each request received
    (request line and headers, CRLF-separated), in order."""

    url: str = ""
    requests: list[str] = field(default_factory=list)


async def _answer(
    responses: Mapping[str, Canned],
    server: SSEServer,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        server.requests.append(head)
        canned = responses.get(head.split(" ", 2)[1], NOT_FOUND)
        writer.write(canned.head() + canned.body)
        await writer.drain()
        if canned.stays_open:
            while await reader.read(4096):  # until the client hangs up
                pass
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # a client that left early is the client's business
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _serve(
    responses: Mapping[str, Canned],
    server: SSEServer,
    ready: threading.Event,
    stop: asyncio.Event,
) -> None:
    answering: set[asyncio.Task[None]] = set()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(_answer(responses, server, reader, writer))
        answering.add(task)
        task.add_done_callback(answering.discard)

    listening = await asyncio.start_server(accept, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    ready.set()
    await stop.wait()
    listening.close()
    await listening.wait_closed()
    if answering:
        await asyncio.wait(answering, timeout=STOP_GRACE)
        for task in answering:
            task.cancel()
        await asyncio.gather(*answering, return_exceptions=True)


@contextlib.contextmanager
def serving(responses: Mapping[str, Canned]) -> Iterator[SSEServer]:
    """Serve ``responses`` (keyed by request target, query included) on a free port from a
    thread of its own, until the block exits; a path not listed gets a 404."""
    server = SSEServer()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()  # bound to the loop that first waits on it
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(_serve(responses, server, ready, stop))
        except BaseException as error:  # reported by the test's thread below
            failure.append(error)
        finally:
            loop.close()
            ready.set()

    thread = threading.Thread(target=run, name="sse-fixture")
    thread.start()
    ready.wait()
    try:
        if failure:
            raise failure[0]
        yield server
    finally:
        if not failure:
            loop.call_soon_threadsafe(stop.set)
        thread.join()
    if failure:
        raise failure[0]
