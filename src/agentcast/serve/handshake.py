"""The opening handshake checks RFC 6455 asks for and picows 2.3.1 does not make.

picows validates the upgrade after the listener factory has run; this runs first,
in the factory: it refuses what must be refused with the status the RFCs name and
normalizes the one header picows reads too strictly.
"""

from __future__ import annotations

from http import HTTPStatus

from picows import WSUpgradeRequest

from agentcast.serve.refusals import HANDSHAKE, Refusal

__all__ = ["SUPPORTED_VERSION", "is_plain_get", "refuse_upgrade"]

SUPPORTED_VERSION = "13"


def _tokens(value: str) -> list[str]:
    return [token.strip().lower() for token in value.split(",")]


def is_plain_get(request: WSUpgradeRequest) -> bool:
    """A GET with no sign of a WebSocket upgrade (no ``Upgrade`` header, no ``upgrade``
    in ``Connection``, no ``Sec-WebSocket-Key``): one of a path we do not serve gets 404,
    where an upgrade that went wrong gets picows' 400."""
    headers = request.headers
    return (
        request.method == b"GET"
        and "Upgrade" not in headers
        and "Sec-WebSocket-Key" not in headers
        and "upgrade" not in _tokens(headers.get("Connection", ""))
    )


def refuse_upgrade(request: WSUpgradeRequest) -> Refusal | None:
    """The refusal of a request that must not be upgraded, else None.

    - exactly one ``Host`` (RFC 9112 3.2: 400 otherwise, for any HTTP/1.1 request);
    - ``Connection`` need only *include* the ``upgrade`` token (RFC 6455 4.2.1; Firefox
      sends ``keep-alive, Upgrade``), ``Upgrade`` the ``websocket`` one: both are
      rewritten to the single token picows compares them with;
    - exactly one ``Sec-WebSocket-Key`` (400);
    - ``Sec-WebSocket-Version`` 13 (RFC 6455 4.2.2: 426 naming the version we speak;
      400 when it is missing). picows would also accept 7 and 8.
    Requests that do not ask for a WebSocket are left to picows and the factory.
    """
    headers = request.headers
    if len(headers.getall("Host", ())) != 1:
        return Refusal(HTTPStatus.BAD_REQUEST, HANDSHAKE, "exactly one Host header is required")
    if "websocket" not in _tokens(headers.get("Upgrade", "")):
        return None
    headers["Upgrade"] = "websocket"
    if "upgrade" in _tokens(headers.get("Connection", "")):
        headers["Connection"] = "Upgrade"
    if len(headers.getall("Sec-WebSocket-Key", ())) > 1:
        return Refusal(HTTPStatus.BAD_REQUEST, HANDSHAKE, "more than one Sec-WebSocket-Key header")
    versions = headers.getall("Sec-WebSocket-Version", ())
    if not versions:
        return Refusal(HTTPStatus.BAD_REQUEST, HANDSHAKE, "no Sec-WebSocket-Version header")
    if versions != [SUPPORTED_VERSION]:
        return Refusal(
            HTTPStatus.UPGRADE_REQUIRED,
            HANDSHAKE,
            f"WebSocket version {SUPPORTED_VERSION} only",
            {"Sec-WebSocket-Version": SUPPORTED_VERSION},
        )
    return None
