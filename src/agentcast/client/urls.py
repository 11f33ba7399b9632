"""The URLs a client connects to: ``ws://`` or ``wss://`` only, checked before dialling."""

from __future__ import annotations

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

__all__ = ["check_url"]


def check_url(url: str) -> None:
    """ValueError (one line, with the URL probably meant) unless ``url`` is ws:// or wss://."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    if scheme not in ("ws", "wss"):
        meant = f"{'wss' if scheme in ('https', 'wss') else 'ws'}://{rest}"
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL (did you mean {meant}?)")
    try:
        parse_uri(url)
    except (InvalidURI, ValueError) as exc:  # urllib's own for a bad port
        raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
