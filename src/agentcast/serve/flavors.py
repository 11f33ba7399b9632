"""Which wire protocol a connection speaks, chosen at the upgrade with ``?protocol=``.

MemGPT's stays the default, unchanged: a client that names no protocol gets agent events
as MemGPT's whole messages. ``agentcast`` is the native event stream. The name is fixed for
the connection's life: its clients share frames with the others of the same protocol.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs

from picows import WSUpgradeRequest

from agentcast.printable import quote
from agentcast.serve.refusals import HANDSHAKE, Refusal
from agentcast.streams.encodings import ENCODINGS

__all__ = ["wire_encoding"]

DEFAULT = "memgpt"


def wire_encoding(request: WSUpgradeRequest) -> int | Refusal:
    """The encoding the request asks for (an index of ``ENCODINGS``), or its refusal (400)."""
    query = parse_qs(request.path.decode("latin-1").partition("?")[2])
    names = query.get("protocol", [DEFAULT])
    name = names[-1]
    if len(set(names)) > 1 or name not in ENCODINGS:
        return Refusal(
            HTTPStatus.BAD_REQUEST,
            HANDSHAKE,
            f"unknown protocol {quote(', '.join(names))}: one of {', '.join(ENCODINGS)}",
        )
    return ENCODINGS.index(name)
