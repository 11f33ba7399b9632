"""The browser ``Origin`` check at upgrade: a page on another site must not connect.

A request without ``Origin`` (not a browser) passes; a browser's passes when it is the
server's own origin (same scheme, host and port as the ``Host`` it asked for: the
built-in page) or matches one of ``allowed`` (globs, case-insensitive, against the
whole origin, e.g. ``https://*.example.com``); anything else is answered 403.

Without authentication, "own origin" counts only for an IP address or ``localhost``:
a page on a DNS name the attacker controls can rebind that name to 127.0.0.1, and its
origin would then equal the ``Host`` the browser sends (DNS rebinding). Name the
server's DNS origins in ``allowed`` instead. The same rule keeps a rebound page from
reading the server's state (``/metrics``, ``/status``) by its ``Host``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(netloc: str, scheme: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or _DEFAULT_PORTS[scheme]
    except (ValueError, KeyError):
        return None
    return (parts.hostname or "", port)


def _is_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class OriginPolicy:
    """Decides whether an upgrade's ``Origin`` may connect (``secure``: served over TLS,
    so the server's own origin is ``https``; ``host_names``: a DNS ``Host`` may be the
    own origin, safe once clients must authenticate)."""

    def __init__(
        self, allowed: Iterable[str] = (), *, secure: bool = False, host_names: bool = False
    ) -> None:
        self.allowed = tuple(glob.strip().lower() for glob in allowed if glob.strip())
        self.scheme = "https" if secure else "http"
        self.host_names = host_names

    def permits(self, headers: Mapping[str, str]) -> bool:
        origin = headers.get("Origin")
        if origin is None:
            return True
        origin = origin.strip().lower()
        if any(fnmatchcase(origin, glob) for glob in self.allowed):
            return True
        return self._is_own(origin, headers.get("Host", ""))

    def permits_host(self, host: str) -> bool:
        """Whether a plain GET asking for ``host`` may read the server's state. A browser
        only reads another site's answer through DNS rebinding, and then its ``Host`` is
        the attacker's name: so, as for ``Origin``, a DNS name passes only once clients
        must authenticate, or when an ``allowed`` origin names it."""
        own = _host_port(host.strip().lower(), self.scheme)
        if own is None or not own[0]:
            return False
        if self.host_names or _is_address(own[0]):
            return True
        return self._names_allowed(host.strip().lower())

    def _names_allowed(self, host: str) -> bool:
        """Whether an ``allowed`` origin names ``host``, under either scheme: behind a
        proxy that terminates TLS the page's origin is https, this server's scheme http."""
        for scheme, default_port in _DEFAULT_PORTS.items():
            parsed = _host_port(host, scheme)
            if parsed is None:
                continue
            name, port = parsed
            origins = {f"{scheme}://{host}", f"{scheme}://{name}:{port}"}
            if port == default_port:
                origins.add(f"{scheme}://{name}")
            if any(fnmatchcase(origin, glob) for origin in origins for glob in self.allowed):
                return True
        return False

    def _is_own(self, origin: str, host: str) -> bool:
        try:
            parts = urlsplit(origin)
        except ValueError:  # e.g. "http://[": not an origin, so not ours
            return False
        if parts.scheme != self.scheme or parts.path not in ("", "/"):
            return False
        own = _host_port(host.strip().lower(), self.scheme)
        if own is None or own != _host_port(parts.netloc, self.scheme):
            return False
        return self.host_names or _is_address(own[0])
