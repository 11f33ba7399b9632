"""The browser ``Origin`` check at upgrade: a page on another site must not connect.

A request without ``Origin`` (not a browser) passes; a browser's passes when it is the
server's own origin (same scheme, host and port as the ``Host`` it asked for: the
built-in page) or matches one of ``allowed`` (globs, case-insensitive, against the
whole origin, e.g. ``https://*.example.com``); anything else is answered 403.
"""

from __future__ import annotations

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


class OriginPolicy:
    """Decides whether an upgrade's ``Origin`` may connect (``secure``: served over TLS,
    so the server's own origin is ``https``)."""

    def __init__(self, allowed: Iterable[str] = (), *, secure: bool = False) -> None:
        self.allowed = tuple(glob.strip().lower() for glob in allowed if glob.strip())
        self.scheme = "https" if secure else "http"

    def permits(self, headers: Mapping[str, str]) -> bool:
        origin = headers.get("Origin")
        if origin is None:
            return True
        origin = origin.strip().lower()
        if any(fnmatchcase(origin, glob) for glob in self.allowed):
            return True
        return self._is_own(origin, headers.get("Host", ""))

    def _is_own(self, origin: str, host: str) -> bool:
        parts = urlsplit(origin)
        if parts.scheme != self.scheme or parts.path not in ("", "/"):
            return False
        own = _host_port(host.strip().lower(), self.scheme)
        return own is not None and own == _host_port(parts.netloc, self.scheme)
