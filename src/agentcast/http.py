"""Plain HTTP GETs answered on the WebSocket port: ``/healthz``, ``/readyz``, ``/metrics``.

picows hands every request to the listener factory, upgrade or not, and answers an
exception there with a 500 whose body is the exception's text: every fault here becomes
a generic 500 and one logged error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

from picows import WSUpgradeRequest, WSUpgradeResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from agentcast.auth import Refused
from agentcast.gate import Gate

__all__ = ["HttpEndpoints"]

log = logging.getLogger("agentcast.http")

Peer = tuple[str, int] | None


class HttpEndpoints:
    """The probes and the metrics of one server.

    ``unready`` returns why the server cannot serve yet (e.g. Redis unreachable), or None.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        unready: Callable[[], str | None],
        gate: Gate,
    ) -> None:
        self.registry = registry
        self._unready = unready
        self._gate = gate
        self._routes: dict[bytes, Callable[[WSUpgradeRequest, Peer], WSUpgradeResponse]] = {
            b"/healthz": self._healthz,
            b"/readyz": self._readyz,
            b"/metrics": self._metrics,
        }

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
            return _text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _healthz(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse:
        return _text(HTTPStatus.OK, "ok")

    def _readyz(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse:
        reason = self._unready()
        if reason is None:
            return _text(HTTPStatus.OK, "ready")
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {reason}")

    def _metrics(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse:
        try:
            self._gate.identify(request, peer)
        except Refused as refused:
            return Gate.refusal(refused)
        response: WSUpgradeResponse = WSUpgradeResponse.create_ok_response(
            generate_latest(self.registry), {"Content-Type": CONTENT_TYPE_LATEST}
        )
        return response


def _text(status: HTTPStatus, body: str) -> WSUpgradeResponse:
    data = body.encode() + b"\n"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if status == HTTPStatus.OK:
        response: WSUpgradeResponse = WSUpgradeResponse.create_ok_response(data, headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, data, headers)
    return response
