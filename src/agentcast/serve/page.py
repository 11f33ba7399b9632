"""The live page: ``GET /`` (``/?agent=ID`` opens that agent) and its files, shipped in
the package (``agentcast/serve/static/``, no build step, nothing from the internet), plus
``GET /status``, the server's client count the page's status bar shows.

Only the fixed paths below are served, from memory: no request path ever names a file.
The page's strict Content-Security-Policy lets it load its own files only and connect to
this server only (its WebSocket, or its ``EventSource`` on ``/sse/``, and ``fetch`` of
``/status``); it renders server text with ``textContent`` only.
With authentication on, ``/status`` needs a token (``?token=``), like ``/metrics``;
without, it answers IP address and ``localhost`` Hosts only (DNS rebinding), like
``/metrics``; the static files stay open (they hold nothing of the server's).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib.resources import files

import orjson
from picows import WSUpgradeRequest, WSUpgradeResponse

from agentcast.serve.gate import Gate
from agentcast.serve.http import Handler, Peer, read_refusal

__all__ = ["PAGE_FILES", "Page"]

PAGE_FILES: dict[bytes, tuple[str, str]] = {  # path: (file in static/, Content-Type)
    b"/": ("index.html", "text/html; charset=utf-8"),
    b"/page.js": ("page.js", "text/javascript; charset=utf-8"),
    b"/page.css": ("page.css", "text/css; charset=utf-8"),
    b"/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

# A Host it is safe to repeat in the policy: a DNS name or IPv4 address, or a bracketed
# IPv6 one, with an optional port. Any other Host gets 'self' only.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def content_security_policy(host: str) -> str:
    """Own files only; connections to this server only: ``'self'`` covers the page's
    ``fetch`` and ``EventSource`` (same origin), and ``ws:``/``wss:`` of the same host in
    CSP 3 browsers; the explicit ``ws://host`` for older ones."""
    connect = "'self'"
    if _HOST.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class Page:
    """The page's routes for one server; ``client_count`` is read at each ``/status``,
    ``gate`` checks who may read it."""

    def __init__(self, client_count: Callable[[], int], gate: Gate) -> None:
        self._client_count = client_count
        self._gate = gate
        static = files("agentcast.serve") / "static"
        self._files = {
            path: (static.joinpath(name).read_bytes(), content_type)
            for path, (name, content_type) in PAGE_FILES.items()
        }

    def routes(self) -> dict[bytes, Handler]:
        routes: dict[bytes, Handler] = {
            path: functools.partial(self._file, body, content_type)
            for path, (body, content_type) in self._files.items()
        }
        routes[b"/status"] = self._status
        return routes

    @staticmethod
    def _file(
        body: bytes, content_type: str, request: WSUpgradeRequest, peer: Peer
    ) -> WSUpgradeResponse:
        headers = {
            "Content-Type": content_type,
            "Content-Security-Policy": content_security_policy(request.headers.get("Host", "")),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",  # a server upgrade serves its own page at once
        }
        response: WSUpgradeResponse = WSUpgradeResponse.create_ok_response(body, headers)
        return response

    def _status(self, request: WSUpgradeRequest, peer: Peer) -> WSUpgradeResponse:
        refused = read_refusal(self._gate, request, peer)
        if refused is not None:
            return refused
        headers = {
            "Content-Type": "application/json",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        body = orjson.dumps({"clients": self._client_count()})
        response: WSUpgradeResponse = WSUpgradeResponse.create_ok_response(body, headers)
        return response
