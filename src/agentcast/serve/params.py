"""A request parameter's one value, for the WebSocket upgrade's ``?protocol=`` and the SSE
routes' ``protocol``, ``since`` and ``Last-Event-ID`` alike."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["one_value"]


def one_value(values: Iterable[str], default: str) -> str:
    """A parameter's value; given several times, differently, all of them joined, which
    no check accepts: ambiguous, refused."""
    distinct = list(dict.fromkeys(values))
    return ", ".join(distinct) if distinct else default
