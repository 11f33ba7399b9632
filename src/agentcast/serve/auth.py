"""Who a connection is: identities, the upgrade request authenticators see, and JWT.

``Broadcaster(authenticate=...)`` calls the authenticator in picows' listener
factory, on the loop thread and synchronously, once per upgrade: it must not do
I/O there. ``JWTAuthenticator`` verifies a token from ``?token=`` (browsers cannot
set headers on a WebSocket) or ``Authorization: Bearer``; JWKS keys are fetched off
the loop thread and cached.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = [
    "TOKEN_EXPIRED",
    "Authenticate",
    "Identity",
    "JWKSKeys",
    "JWTAuthenticator",
    "Refused",
    "UpgradeRequest",
]

log = logging.getLogger("agentcast.auth")

TOKEN_EXPIRED = 3005  # close code at a connection's ``exp`` (Centrifugo's "expired")


class Refused(Exception):
    """An upgrade (or a token refresh) that must not be accepted; ``status`` is the HTTP
    status the upgrade is answered with (401 by default)."""

    def __init__(self, reason: str, status: HTTPStatus = HTTPStatus.UNAUTHORIZED) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _globs(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise Refused(f"claim {name!r} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class Identity:
    """A verified client: ``agents`` globs it may talk to and read, ``watch`` globs it may
    only read, ``admin`` may do everything. Globs are ``fnmatch`` patterns, case-sensitive."""

    sub: str
    agents: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()
    admin: bool = False
    expires_at: float | None = None  # Unix time; the connection is closed then
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Identity:
        """The identity a verified token's claims describe (``Refused`` if malformed)."""
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Refused("token has no 'sub'")
        admin = claims.get("admin", False)
        if not isinstance(admin, bool):
            raise Refused("claim 'admin' must be a boolean")
        exp = claims.get("exp")
        return cls(
            sub=sub,
            agents=_globs(claims, "agents"),
            watch=_globs(claims, "watch"),
            admin=admin,
            expires_at=None if exp is None else float(exp),
            claims=dict(claims),
        )

    def may_talk(self, agent_id: str) -> bool:
        """May send ``user_message`` to ``agent_id`` (and receive its messages)."""
        return self.admin or any(fnmatchcase(agent_id, glob) for glob in self.agents)

    def may_read(self, agent_id: str) -> bool:
        """May receive ``agent_id``'s messages, live and from history."""
        return self.may_talk(agent_id) or any(fnmatchcase(agent_id, glob) for glob in self.watch)

    def same_rights(self, other: Identity) -> bool:
        return (self.sub, self.agents, self.watch, self.admin) == (
            other.sub,
            other.agents,
            other.watch,
            other.admin,
        )


@dataclass(frozen=True)
class UpgradeRequest:
    """What an authenticator is given: the request path with its query, the headers
    (case-insensitive), and the peer's (address, port) (``None`` for a refresh, which
    has no upgrade of its own)."""

    path: str
    headers: Mapping[str, str]
    peer: tuple[str, int] | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        # Not urlsplit: it raises on a path such as "//[" (an IPv6 netloc left open).
        return parse_qs(self.path.partition("?")[2])

    def token(self) -> str | None:
        """The bearer token: ``?token=`` first, else ``Authorization: Bearer``."""
        tokens = self.query.get("token")
        if tokens:
            return tokens[0]
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None


Authenticate = Callable[[UpgradeRequest], "Identity | None"]
"""Returns the client's identity, or ``None`` to accept it anonymously (with no rights
to any agent under ``AgentServer``); raises ``Refused`` to answer the upgrade with 401."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Keys are trusted for where they come from: a JWKS URL that redirects is refused
    rather than followed (to wherever a compromised or misconfigured host points)."""

    def redirect_request(self, *args: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


def _fetch(source: str, timeout: float) -> bytes:
    if "://" not in source:
        return Path(source).read_bytes()
    if urlsplit(source).scheme not in ("http", "https"):
        raise ValueError(f"JWKS URL must be http or https: {source}")
    try:
        with _OPENER.open(source, timeout=timeout) as response:
            body: bytes = response.read(1024 * 1024)
            return body
    except urllib.error.HTTPError as error:
        error.close()
        redirect = " (a redirect: give the final URL)" if 300 <= error.code < 400 else ""
        raise ValueError(f"JWKS URL {source} answered HTTP {error.code}{redirect}") from None


class JWKSKeys:
    """A JWKS (file or URL) cached by ``kid``: loaded once in the constructor (the caller's
    thread), refreshed in the background every ``refresh_interval`` seconds, and at most
    once per ``refetch_interval`` when a token names a ``kid`` the cache lacks (any client
    can send one: the interval bounds how often it makes the server fetch; those
    refetches are counted). One fetch at a time. Lookups never wait: a token with a new
    ``kid`` is refused until the refetch has landed."""

    def __init__(
        self,
        source: str,
        *,
        refresh_interval: float = 300.0,
        refetch_interval: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        self.source = source
        self.refresh_interval = refresh_interval
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._fetcher: threading.Thread | None = None
        self.refetches = 0  # fetches started for a kid the cache lacked
        self._keys = self._parse(_fetch(source, timeout))
        self._attempted_at = time.monotonic()

    @staticmethod
    def _parse(data: bytes) -> dict[str | None, jwt.PyJWK]:
        try:
            keys = jwt.PyJWKSet.from_dict(json.loads(data)).keys
        except jwt.PyJWTError as exc:
            raise ValueError(f"not a usable JWKS: {exc}") from None
        return {key.key_id: key for key in keys}

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(self._keys)

    @property
    def fetching(self) -> bool:
        fetcher = self._fetcher
        return fetcher is not None and fetcher.is_alive()

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The cached key named ``kid`` (the only key when ``kid`` is None), else None."""
        now = time.monotonic()
        keys = self._keys
        found = keys.get(kid) if kid is not None or len(keys) != 1 else next(iter(keys.values()))
        since = now - self._attempted_at  # failed fetches are not retried at once either
        if since >= self.refresh_interval:
            self._refetch(now)
        elif found is None and since >= self.refetch_interval and self._refetch(now):
            self.refetches += 1
        return found

    def stats(self) -> dict[str, int]:
        return {"jwks_refetches": self.refetches}

    def _refetch(self, now: float) -> bool:
        """Start a background fetch unless one is running; whether it started."""
        with self._lock:
            if self.fetching:
                return False
            self._attempted_at = now
            self._fetcher = threading.Thread(target=self._load, name="agentcast-jwks", daemon=True)
            self._fetcher.start()
            return True

    def _load(self) -> None:
        try:
            keys = self._parse(_fetch(self.source, self.timeout))
        except Exception as exc:  # keep serving with the keys we have
            log.warning("JWKS %s: refresh failed, keeping the cached keys: %s", self.source, exc)
            return
        self._keys = keys


def _algorithm_of(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        return "ES256"
    raise ValueError("the public key must be an RSA or a P-256 EC key")


class JWTAuthenticator:
    """Verify a JWT (HS256 with a shared secret, RS256/ES256 with a PEM public key or a
    JWKS) and turn its claims into an ``Identity``. ``exp`` and ``nbf`` are checked when
    present (with ``leeway`` seconds), ``aud``/``iss`` when configured; ``sub`` is
    required. The algorithm list is fixed by the key type, never taken from the token."""

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        public_key: bytes | None = None,
        jwks: JWKSKeys | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        if sum(source is not None for source in (secret, public_key, jwks)) != 1:
            raise ValueError("give exactly one of secret, public_key, jwks")
        self._secret = secret
        self._public_key = None if public_key is None else load_pem_public_key(public_key)
        self._jwks = jwks
        if secret is not None:
            self.algorithms = ["HS256"]
        elif self._public_key is not None:
            self.algorithms = [_algorithm_of(self._public_key)]
        else:
            self.algorithms = ["RS256", "ES256"]
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    def stats(self) -> dict[str, int]:
        """The JWKS' refetch counter (none for a secret or a public key)."""
        return {} if self._jwks is None else self._jwks.stats()

    @classmethod
    def from_secret_file(cls, path: str | Path, **options: Any) -> JWTAuthenticator:
        """Reads the HS256 secret; one warning if the group or others may read it too."""
        mode = Path(path).stat().st_mode
        if mode & 0o077:
            log.warning(
                "%s can be read by others than its owner (mode %o): anyone who reads it can"
                " mint tokens; chmod 600 it",
                path,
                mode & 0o777,
            )
        secret = Path(path).read_bytes().strip()
        if len(secret) < 32:
            raise ValueError(f"{path}: an HS256 secret must be at least 32 bytes")
        return cls(secret=secret, **options)

    @classmethod
    def from_public_key_file(cls, path: str | Path, **options: Any) -> JWTAuthenticator:
        return cls(public_key=Path(path).read_bytes(), **options)

    @classmethod
    def from_jwks(cls, source: str, **options: Any) -> JWTAuthenticator:
        return cls(jwks=JWKSKeys(source), **options)

    def __call__(self, request: UpgradeRequest) -> Identity:
        token = request.token()
        if token is None:
            raise Refused("no token: pass ?token= or Authorization: Bearer")
        return self.verify(token)

    def verify(self, token: str) -> Identity:
        key, algorithms = self._key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["sub"], "verify_aud": self.audience is not None},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # pyjwt raises TypeError or ValueError, not its own errors, for some input it
            # cannot use (e.g. a key of another type than the header's alg): a client's.
            raise Refused(f"invalid token: {exc}") from None
        return Identity.from_claims(claims)

    def _key(self, token: str) -> tuple[Any, list[str]]:
        """The key to verify ``token`` with, and the algorithms that key allows."""
        if self._secret is not None:
            return self._secret, self.algorithms
        if self._jwks is None:
            return self._public_key, self.algorithms
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Refused(f"invalid token: {exc}") from None
        key = self._jwks.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise Refused("unknown signing key (kid); retry shortly")
        if key.algorithm_name not in self.algorithms:
            raise Refused(f"the signing key's algorithm {key.algorithm_name} is not accepted")
        return key.key, [key.algorithm_name]  # the key's own: a header naming another fails
