"""Plain HTTP GETs: ``/healthz``, ``/readyz``, ``/metrics`` on the WebSocket port or one
of their own (``serve_plain``), and the live page's (``agentcast.serve.page``) on the WebSocket
port.

picows hands every request to the listener factory, upgrade or not, and answers an
exception there with a 500 whose body is the exception's text: every fault here becomes
a generic 500 and one logged error instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus

from multidict import CIMultiDict
from picows import WSUpgradeRequest, WSUpgradeResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from agentcast.serve import refusals
from agentcast.serve.auth import Refused
from agentcast.serve.bounded_reads import LINGER, TLS_HANDSHAKE_BYTE
from agentcast.serve.gate import Gate
from agentcast.serve.refusals import text_response

__all__ = ["Handler", "HttpEndpoints", "Peer", "Probes", "read_refusal", "serve_plain"]

log = logging.getLogger("agentcast.http")

HEAD_LIMIT = 8192  # bytes of request line and headers on the plain port
HEAD_TIMEOUT = 5.0  # seconds a plain-port client has to send them

Peer = tuple[str, int] | None


Handler = Callable[[WSUpgradeRequest, Peer], WSUpgradeResponse]


class HttpEndpoints:
    """The plain GETs one port answers: a fixed path (query ignored) to its handler."""

    def __init__(self, routes: Mapping[bytes, Handler]) -> None:
        self._routes = dict(routes)

    def answer(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse | None:
        """The response to a non-upgrade GET of one of our paths; None for anything else."""
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        route = self._routes.get(request.path.partition(b"?")[0])
        if route is None:
            return None
        try:
            return route(request, peer)
        except Exception:
            log.exception("GET %s failed", request.path[:64].decode("latin-1"))
            return text_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


def read_refusal(gate: Gate, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse | None:
    """The answer to a read of the server's state ``gate`` refuses (no token or a bad one;
    without authentication, a rebound page's ``Host``); None if it passes."""
    try:
        gate.check_reader(request, peer)
    except Refused as refused:
        return Gate.refusal(refused)
    return None


class Probes:
    """The probes and the metrics of one server.

    ``unready`` returns why the server cannot serve yet (e.g. Redis unreachable), or None.
    ``gate`` checks who may read ``/metrics``, on the WebSocket port or one of its own.
    """

    def __init__(
        self, registry: CollectorRegistry, unready: Callable[[], str | None], gate: Gate
    ) -> None:
        self.registry = registry
        self._unready = unready
        self._gate = gate

    def routes(self) -> dict[bytes, Handler]:
        return {b"/healthz": self._healthz, b"/readyz": self._readyz, b"/metrics": self._metrics}

    def _healthz(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse:
        return text_response(HTTPStatus.OK, "ok")

    def _readyz(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse:
        reason = self._unready()
        if reason is None:
            return text_response(HTTPStatus.OK, "ready")
        return text_response(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {reason}")

    def _metrics(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse:
        refused = read_refusal(self._gate, request, peer)
        if refused is not None:
            return refused
        response: WSUpgradeResponse = WSUpgradeResponse.create_ok_response(
            generate_latest(self.registry), {"Content-Type": CONTENT_TYPE_LATEST}
        )
        return response


async def serve_plain(endpoints: HttpEndpoints, host: str, port: int) -> asyncio.Server:
    """Serve ``endpoints`` on ``host:port`` of their own: one GET per connection (as picows
    answers them), 404 for other paths, 405 for other methods, 431 for a head over
    ``HEAD_LIMIT``, 400 for a TLS handshake (an ``https://`` scrape of this plain port)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(_read_head(reader), HEAD_TIMEOUT)
            if isinstance(head, WSUpgradeResponse):
                response = head
            elif (request := _parse(head)) is None:
                response = text_response(HTTPStatus.BAD_REQUEST, "bad request")
            elif request.method != b"GET":
                response = text_response(HTTPStatus.METHOD_NOT_ALLOWED, "GET only")
            else:
                peer = writer.get_extra_info("peername")
                response = endpoints.answer(request, peer) or text_response(
                    HTTPStatus.NOT_FOUND, "not found"
                )
            response.headers["Connection"] = "close"
            writer.write(response.to_bytes())
            await writer.drain()
            if isinstance(head, WSUpgradeResponse):
                await _linger(reader)
        except (asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away, or never ended its head: nothing to answer
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port, limit=HEAD_LIMIT)


async def _read_head(reader: asyncio.StreamReader) -> bytes | WSUpgradeResponse:
    """The request head, or the refusal of one too long or of a TLS handshake."""
    first = await reader.readexactly(1)
    if first[0] == TLS_HANDSHAKE_BYTE:
        return refusals.TLS_HANDSHAKE.response()
    try:
        return first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        return text_response(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head over 8 KiB")


async def _linger(reader: asyncio.StreamReader) -> None:
    """Read and drop what a refused client still sends, until it closes or ``LINGER``
    seconds pass: closing on unread bytes resets the connection, and the reset can erase
    the answer before the client reads it (RFC 9112 9.6)."""

    async def drain() -> None:
        while await reader.read(HEAD_LIMIT):
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(drain(), LINGER)


def _parse(head: bytes) -> WSUpgradeRequest | None:
    """The request line and headers, in picows' request type; None if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, colon, value = line.partition(":")
            if not colon:
                return None
            headers.add(name.strip(), value.strip())
    request = WSUpgradeRequest()
    request.method, request.path, request.version = (p.encode("latin-1") for p in parts)
    request.headers = headers
    return request
