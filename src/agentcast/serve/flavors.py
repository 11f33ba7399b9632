"""Which wire protocol a WebSocket connection speaks, chosen at the upgrade: ``?protocol=``,
or else the first of ours its ``Sec-WebSocket-Protocol`` offers (echoed in the 101).

MemGPT's stays the default, unchanged: a client that names no protocol gets agent events
as MemGPT's whole messages. ``agentcast`` is the native event stream; ``agui``,
``aisdk`` and ``letta`` the field's (``agentcast.streams.protocols``). The choice is fixed
for the connection's life: its clients share frames with the others of the same protocol.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs

from picows import WSUpgradeRequest

from agentcast.printable import quote
from agentcast.serve.params import one_value
from agentcast.serve.refusals import HANDSHAKE, Refusal
from agentcast.streams.encodings import MEMGPT, PROTOCOLS, encoding_id

__all__ = ["wire_encoding"]


def wire_encoding(request: WSUpgradeRequest) -> tuple[int, str | None] | Refusal:
    """The encoding the request asks for (an index of ``ENCODINGS``) and the subprotocol
    to answer with (None: none asked for by header), or its refusal (400)."""
    query = parse_qs(request.path.decode("latin-1").partition("?")[2])
    name = one_value(query.get("protocol", ()), "")
    if name:
        if name not in PROTOCOLS:
            return Refusal(
                HTTPStatus.BAD_REQUEST,
                HANDSHAKE,
                f"unknown protocol {quote(name)}: one of {', '.join(PROTOCOLS)}",
            )
        return encoding_id(name), None
    offered = request.headers.getall("Sec-WebSocket-Protocol", ())
    for name in (token.strip() for header in offered for token in header.split(",")):
        if name in PROTOCOLS:
            return encoding_id(name), name
    return MEMGPT, None
