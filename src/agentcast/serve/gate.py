"""The upgrade checks that decide who may connect: the browser ``Origin``, then identity.

Each is one call from the listener factory; refusals are answered with an HTTP status
(403, 401) and counted, never logged per request (a flood of bad upgrades must not
grow the log).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from picows import WSUpgradeRequest, WSUpgradeResponse

from agentcast.serve.auth import Authenticate, Identity, JWTAuthenticator, Refused, UpgradeRequest
from agentcast.serve.origins import OriginPolicy
from agentcast.serve.refusals import text_response

__all__ = ["Gate"]

log = logging.getLogger("agentcast.auth")


class Gate:
    """``Origin`` policy and authenticator of one server, with their refusal counters."""

    def __init__(self, origins: OriginPolicy, authenticate: Authenticate | None) -> None:
        self.origins = origins
        self.authenticate = authenticate
        self.origin_refused = 0
        self.auth_refused = 0
        self.refresh_refused = 0
        self.host_refused = 0

    def refuse_origin(self, request: WSUpgradeRequest) -> WSUpgradeResponse | None:
        """403 for a browser page of a foreign origin, else None."""
        if self.origins.permits(request.headers):
            return None
        self.origin_refused += 1
        return text_response(HTTPStatus.FORBIDDEN, "origin not allowed")

    def identify(self, request: WSUpgradeRequest, peer: tuple[str, int] | None) -> Identity | None:
        """The client's identity (None: anonymous); raises ``Refused``."""
        if self.authenticate is None:
            return None
        view = UpgradeRequest(request.path.decode("latin-1"), request.headers, peer)
        try:
            return self._verified(self.authenticate, view)
        except Refused:
            self.auth_refused += 1
            raise

    def check_reader(self, request: WSUpgradeRequest, peer: tuple[str, int] | None) -> None:
        """Raises ``Refused`` for a plain GET that must not read the server's state: a bad
        token with authentication; without it, a ``Host`` that is a DNS name not allowed
        (a rebound page's: see ``OriginPolicy.permits_host``)."""
        if self.authenticate is not None:
            self.identify(request, peer)
        elif not self.origins.permits_host(request.headers.get("Host", "")):
            self.host_refused += 1
            raise Refused("Host not allowed: list it in allowed origins", HTTPStatus.FORBIDDEN)

    def refresh(self, current: Identity | None, token: str) -> Identity:
        """The identity a refreshed ``token`` gives, verified as the upgrade was (as a
        Bearer header); it must keep ``current``'s sub and rights (reconnect to change
        them). Raises ``Refused``, counted."""
        try:
            if self.authenticate is None or current is None:
                raise Refused("this connection has no token to refresh")
            bearer = UpgradeRequest("/", {"Authorization": f"Bearer {token}"})
            renewed = self._verified(self.authenticate, bearer)
            if renewed is None or not renewed.same_rights(current):
                raise Refused("a refreshed token must keep the same sub and rights")
        except Refused:
            self.refresh_refused += 1
            raise
        return renewed

    @staticmethod
    def _verified(authenticate: Authenticate, view: UpgradeRequest) -> Identity | None:
        """``authenticate(view)``; its own failure (not a client's) is logged and refused."""
        try:
            return authenticate(view)
        except Refused:
            raise
        except Exception:
            log.exception("the authenticator failed")
            raise Refused("authentication failed", HTTPStatus.INTERNAL_SERVER_ERROR) from None

    @staticmethod
    def refusal(refused: Refused) -> WSUpgradeResponse:
        unauthorized = refused.status == HTTPStatus.UNAUTHORIZED
        headers = {"WWW-Authenticate": "Bearer"} if unauthorized else None
        return text_response(refused.status, refused.reason, headers)

    def stats(self) -> dict[str, int]:
        verifier = self.authenticate if isinstance(self.authenticate, JWTAuthenticator) else None
        return {
            **({} if verifier is None else verifier.stats()),
            "origin_refused": self.origin_refused,
            "auth_refused": self.auth_refused,
            "refresh_refused": self.refresh_refused,
            "host_refused": self.host_refused,
        }
