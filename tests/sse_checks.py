"""An SSE watcher for the tests: httpx and httpx-sse (clients no one here wrote) reading
agentcast's ``/sse/`` streams, and a raw reader for what they hide (comments, closes)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource


@contextmanager
def sse_stream(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[tuple[httpx.Response, EventSource]]:
    """An open SSE response on ``path`` (headers read) and its event source; over
    ``https://`` with ``tls`` (the client's context)."""
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
    with (
        httpx.Client(timeout=httpx.Timeout(10.0), verify=tls or True) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        yield response, EventSource(response)


def events_until(source: EventSource, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, native event) pairs up to and including the first event of type ``kind``."""
    out = []
    for sse in source.iter_sse():
        event = orjson.loads(sse.data)
        out.append((sse.id, event))
        if event["type"] == kind:
            return out
    raise AssertionError(f"the stream ended before a {kind}: {out}")


def raw_get(port: int, path: str, headers: str = "", *, rcvbuf: int | None = None) -> socket.socket:
    """A plain socket that sent ``GET path`` (with ``headers`` lines) and reads nothing yet."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    sock.settimeout(10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    """What the socket gives until ``marker`` has come (after ``data`` read before)."""
    while marker not in data:
        chunk = sock.recv(1 << 16)
        assert chunk, f"closed before {marker!r}: {data[-300:]!r}"
        data += chunk
    return data


def parse_sse(body: bytes) -> tuple[list[tuple[str | None, bytes]], list[bytes]]:
    """A raw stream body as (id, data) events and the comments, in order."""
    events: list[tuple[str | None, bytes]] = []
    comments: list[bytes] = []
    for block in body.split(b"\n\n"):
        if not block:
            continue
        event_id = None
        data = []
        for line in block.split(b"\n"):
            if line.startswith(b":"):
                comments.append(line[1:].strip())
            elif line.startswith(b"id: "):
                event_id = line[4:].decode()
            elif line.startswith(b"data: "):
                data.append(line[6:])
        if data:
            events.append((event_id, b"\n".join(data)))
    return events, comments
