"""Which failures of ``agentcast client`` no retry can fix, said in one line with what to do.

Retrying is for a server that was up and went away. On the first connection, nothing
listening on the port, a certificate the client does not trust or that is not for the
address dialled, and ``ws://`` to a TLS port (or ``wss://`` to a plain one) stay that way
however long the client waits: it says so at once instead of after every retry. Whether
the scheme is the wrong one is not in the error (the server just closes, or resets): a
short probe of the same port in the other scheme tells.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import InvalidMessage
from websockets.uri import parse_uri

from agentcast.memgpt.protocol import FORBIDDEN

__all__ = ["PROBE_TIMEOUT", "forbidden", "refusal_hint", "unfixable"]

PROBE_TIMEOUT: Final = 1.0
"""Seconds a probe of the other scheme may take."""
HOSTNAME_MISMATCH: Final = 62  # X509_V_ERR_HOSTNAME_MISMATCH
IP_ADDRESS_MISMATCH: Final = 64  # X509_V_ERR_IP_ADDRESS_MISMATCH


async def unfixable(url: str, error: BaseException) -> str | None:
    """Why dialling ``url`` for the first time failed with ``error`` for good, and what to
    do; None if a retry may succeed."""
    uri = parse_uri(url)
    where = f"{uri.host}:{uri.port}"
    if isinstance(error, ConnectionRefusedError):
        return f"nothing listens on {where} (is `agentcast serve` running, on this port?)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return _untrusted(error, uri.host)
    other = _without_query(f"{'ws' if uri.secure else 'wss'}://{url.partition('://')[2]}")
    if isinstance(error, (ssl.SSLError, ConnectionResetError, InvalidMessage)):
        speaks_other = _speaks_http if uri.secure else _speaks_tls
        if await speaks_other(uri.host, uri.port):
            return f"the server speaks {other.partition(':')[0]}://: use {other}"
    return None


def refusal_hint(status: int, url: str, token: str | None) -> str:
    """What to do about an upgrade refused with ``status`` ("" if nothing to say)."""
    if status != HTTPStatus.UNAUTHORIZED:
        return ""
    if token is not None or "token" in dict(parse_qsl(urlsplit(url).query)):
        return ": the server did not accept the token; check --token / AGENTCAST_TOKEN"
    return ": the server wants a token; give it with --token or AGENTCAST_TOKEN"


def forbidden(frame: Mapping[str, Any]) -> str | None:
    """The line that ends the client for a ``forbidden`` reply (what the token does not
    allow, and on which agent; shown by a caller that escapes it); None for any other
    frame. Asking again cannot help."""
    if frame.get("code") != FORBIDDEN:
        return None
    what = str(frame.get("message") or "not allowed")
    agent = frame.get("agent_id", frame.get("channel"))
    on = f" ({str(agent)[:200]!r})" if agent is not None else ""
    return f"forbidden: {what}{on}; check the token (--token / AGENTCAST_TOKEN)"


def _untrusted(error: ssl.SSLCertVerificationError, host: str) -> str:
    why = error.verify_message or str(error)
    if error.verify_code == IP_ADDRESS_MISMATCH:
        return (
            f"the server's certificate is not for {host} ({why}): an IP address must be in"
            " its subjectAltName, a CN is not checked; reissue it, or dial a name it lists"
        )
    if error.verify_code == HOSTNAME_MISMATCH:
        return f"the server's certificate is not for {host} ({why}): dial a name it lists"
    return f"the server's certificate is not trusted ({why}): give its CA with --cafile"


async def _speaks_tls(host: str, port: int) -> bool:
    """A TLS handshake (certificate unchecked) with ``host:port`` completes."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return await _probe(host, port, context, b"") is not None


async def _speaks_http(host: str, port: int) -> bool:
    """``host:port`` answers a plain HTTP request with HTTP."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    return await _probe(host, port, None, request) == b"HTTP/"


async def _probe(host: str, port: int, tls: ssl.SSLContext | None, request: bytes) -> bytes | None:
    """The first 5 bytes answering ``request`` (b"" if nothing is sent), or None if the
    connection fails within ``PROBE_TIMEOUT``."""
    try:
        return await asyncio.wait_for(_exchange(host, port, tls, request), PROBE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return None


async def _exchange(host: str, port: int, tls: ssl.SSLContext | None, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        if not request:
            return b""
        writer.write(request)
        return await reader.read(5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _without_query(url: str) -> str:
    """``url`` without its query: never a ``?token=`` on the terminal."""
    return url.partition("?")[0]
