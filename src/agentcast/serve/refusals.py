"""What the server answers instead of a WebSocket: every refusal's status and counter, and
the one builder of plain-text HTTP answers (handshake, gate, admission, server, http).

Each refusal is counted under one ``stats()`` key (``agentcast_upgrades_refused_total``'s
reason label in ``agentcast.serve.metrics``) and never logged per request: a flood of bad
upgrades must not grow the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

from picows import WSUpgradeResponse

__all__ = [
    "CONNECT_RATE",
    "HANDSHAKE",
    "HEAD_TOO_LARGE",
    "PER_IP",
    "SERVER_FULL",
    "TLS_HANDSHAKE",
    "Refusal",
    "text_response",
]

BODY_LIMIT = 200  # bytes of a reason quoted in an answer (a reason may quote client input)


@dataclass(frozen=True)
class Refusal:
    """A refusal: its status, the counter it is counted under (a ``stats()`` key), the
    reason its answer says, and any headers the answer needs."""

    status: HTTPStatus
    counter: str
    reason: str
    headers: Mapping[str, str] | None = None

    def response(self) -> WSUpgradeResponse:
        return text_response(self.status, self.reason, self.headers)


PER_IP = Refusal(
    HTTPStatus.SERVICE_UNAVAILABLE,
    "connections_refused_per_ip",
    "too many connections from your IP",
)
CONNECT_RATE = Refusal(
    HTTPStatus.TOO_MANY_REQUESTS,
    "connections_refused_rate",
    "too many new connections from your IP",
)
SERVER_FULL = Refusal(HTTPStatus.SERVICE_UNAVAILABLE, "upgrades_refused_max_clients", "server full")
HANDSHAKE = "upgrades_refused_handshake"  # 400 or 426: agentcast.serve.handshake's refusals
HEAD_TOO_LARGE = Refusal(  # written by agentcast.serve.bounded_reads
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
    "upgrades_refused_head_size",
    "request head over 16 KiB",
    {"Connection": "close"},
)
TLS_HANDSHAKE = Refusal(  # written by agentcast.serve.bounded_reads: a wss:// client
    HTTPStatus.BAD_REQUEST,
    HANDSHAKE,
    "a TLS handshake where an HTTP request was expected: use ws:// or http://",
    {"Connection": "close"},
)


def text_response(
    status: HTTPStatus, text: str, headers: Mapping[str, str] | None = None
) -> WSUpgradeResponse:
    """``text`` (at most ``BODY_LIMIT`` bytes of it) and a newline as ``text/plain``, with
    ``status`` and any ``headers``."""
    body = text.encode()[:BODY_LIMIT] + b"\n"
    all_headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
    if status == HTTPStatus.OK:
        response: WSUpgradeResponse = WSUpgradeResponse.create_ok_response(body, all_headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, body, all_headers)
    return response
