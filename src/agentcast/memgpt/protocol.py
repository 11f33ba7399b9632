"""The MemGPT WebSocket wire protocol: message builders and one validating parser.

Pure functions, no I/O. Builders return the JSON bytes of one message;
``parse_client_message`` turns a client's text into a typed message or raises
``ProtocolError`` carrying the frame to send back. Additions to MemGPT's
protocol (``agent_id``/``seq`` on agent responses, ``subscribe``/``unsubscribe``)
are extra fields and types that old clients ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from agentcast.printable import quote

__all__ = [
    "BAD_AGENT_ID",
    "MAX_AGENT_ID_BYTES",
    "MESSAGE_TYPES",
    "Command",
    "ProtocolError",
    "Refresh",
    "Subscribe",
    "Unsubscribe",
    "UserMessage",
    "agent_response",
    "agent_response_end",
    "agent_response_error",
    "agent_response_start",
    "command_response",
    "create_agent",
    "forbidden",
    "parse_client_message",
    "refresh",
    "server_error",
    "subscribe",
    "unauthorized",
    "unsubscribe",
    "user_message",
]

MessageType = Literal["internal_monologue", "assistant_message", "function_message"]
MESSAGE_TYPES: Final = ("internal_monologue", "assistant_message", "function_message")
COMMANDS: Final = ("create_agent",)
MAX_SEQ: Final = 2**63 - 1
MAX_AGENT_ID_BYTES: Final = 256
BAD_AGENT_ID: Final = "bad_agent_id"


# ---- server -> client -------------------------------------------------------


def server_error(message: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": "server_error", "message": message, **extra})


FORBIDDEN: Final = "forbidden"
UNAUTHORIZED: Final = "unauthorized"


def forbidden(action: str, agent_id: str | None = None) -> bytes:
    """The client's identity does not allow ``action`` (on ``agent_id``)."""
    return server_error(f"not allowed to {action}", code=FORBIDDEN, agent_id=agent_id)


def unauthorized(message: str) -> bytes:
    """A token refresh was refused; the connection keeps its old expiry."""
    return server_error(message, code=UNAUTHORIZED)


def command_response(status: str) -> bytes:
    return orjson.dumps({"type": "command_response", "status": status})


def agent_response_error(message: str) -> bytes:
    return orjson.dumps({"type": "agent_response_error", "message": message})


def agent_response_start(agent_id: str) -> bytes:
    """Opens one step of ``agent_id``; its ``agent_id`` (an addition MemGPT's clients
    ignore) pairs it with its end when a connection runs steps of several agents."""
    return orjson.dumps({"type": "agent_response_start", "agent_id": agent_id})


def agent_response_end(agent_id: str) -> bytes:
    """Closes the step ``agent_response_start(agent_id)`` opened."""
    return orjson.dumps({"type": "agent_response_end", "agent_id": agent_id})


def agent_response(
    message_type: MessageType, message: str, agent_id: str | None = None, seq: int | None = None
) -> bytes:
    """An agent's message; ``agent_id`` and ``seq`` are added when known."""
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"message_type must be one of {MESSAGE_TYPES}, not {message_type!r}")
    body: dict[str, Any] = {
        "type": "agent_response",
        "message_type": message_type,
        "message": message,
    }
    if agent_id is not None:
        body["agent_id"] = agent_id
    if seq is not None:
        body["seq"] = seq
    return orjson.dumps(body)


# ---- client -> server -------------------------------------------------------


def user_message(message: str, agent_id: str | None = None) -> bytes:
    return orjson.dumps({"type": "user_message", "message": message, "agent_id": agent_id})


def create_agent(config: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "command", "command": "create_agent", "config": config})


def subscribe(agent_id: str, since: int | None = None) -> bytes:
    body: dict[str, Any] = {"type": "subscribe", "agent_id": agent_id}
    if since is not None:
        body["since"] = since
    return orjson.dumps(body)


def unsubscribe(agent_id: str) -> bytes:
    return orjson.dumps({"type": "unsubscribe", "agent_id": agent_id})


def refresh(token: str) -> bytes:
    return orjson.dumps({"type": "refresh", "token": token})


@dataclass(frozen=True)
class UserMessage:
    message: str
    agent_id: str


@dataclass(frozen=True)
class Command:
    command: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Subscribe:
    agent_id: str
    since: int | None = None


@dataclass(frozen=True)
class Unsubscribe:
    agent_id: str


@dataclass(frozen=True)
class Refresh:
    """A new token for this connection, before its ``exp``."""

    token: str = field(repr=False)


Request = UserMessage | Command | Subscribe | Unsubscribe  # what authorization checks
ClientMessage = Request | Refresh


class ProtocolError(ValueError):
    """A client message that cannot be served; ``reply`` is the frame to send back
    (with ``"code"`` when the error has one a client can act on)."""

    def __init__(
        self, message: str, reply_type: str = "server_error", code: str | None = None
    ) -> None:
        super().__init__(message)
        self.reply_type = reply_type
        self.code = code

    @property
    def reply(self) -> bytes:
        body = {"type": self.reply_type, "message": str(self)}
        if self.code is not None:
            body["code"] = self.code
        return orjson.dumps(body)


def _agent_id(body: dict[str, Any], reply_type: str) -> str:
    """The agent (channel) a request names: ``agent_id``, or ``channel`` as the native
    protocol calls it."""
    agent_id = body.get("agent_id", body.get("channel"))
    if agent_id is None:
        raise ProtocolError("agent_id was not specified in the request", reply_type)
    return _checked_agent_id(agent_id, "agent_id", reply_type)


def _checked_agent_id(agent_id: object, field: str, reply_type: str) -> str:
    """An agent id is a key of server state and is repeated in every frame of its agent:
    at most ``MAX_AGENT_ID_BYTES`` of UTF-8, printable (``str.isprintable``: no control,
    format or separator characters but the space), never echoed back when refused."""
    if not isinstance(agent_id, str) or not agent_id:
        raise ProtocolError(f"{field} must be a non-empty string", reply_type)
    # The length in characters first: a huge id is refused without encoding it.
    if len(agent_id) > MAX_AGENT_ID_BYTES or len(agent_id.encode()) > MAX_AGENT_ID_BYTES:
        raise ProtocolError(
            f"{field} is longer than {MAX_AGENT_ID_BYTES} bytes", reply_type, BAD_AGENT_ID
        )
    if not agent_id.isprintable():
        raise ProtocolError(f"{field} may hold printable characters only", reply_type, BAD_AGENT_ID)
    return agent_id


def parse_client_message(data: bytes | str) -> ClientMessage:
    """Validate one client text message; raise ``ProtocolError`` saying what is wrong."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        problem = "not UTF-8" if "utf-8" in str(exc).lower() else "not valid JSON"
        raise ProtocolError(f"bad data from client: {problem} ({exc})") from None
    if not isinstance(body, dict):
        raise ProtocolError(
            f"bad data from client: expected a JSON object, got {type(body).__name__}"
        )
    kind = body.get("type")
    if kind is None:
        raise ProtocolError("bad data from client: JSON but no type")
    if kind == "user_message":
        message = body.get("message")
        if not isinstance(message, str):
            raise ProtocolError("user_message needs a string message", "agent_response_error")
        return UserMessage(message, _agent_id(body, "agent_response_error"))
    if kind == "command":
        command = body.get("command")
        if command not in COMMANDS:
            raise ProtocolError(f"unrecognized client command type: {quote(command)}")
        config = body.get("config", {})
        if not isinstance(config, dict):
            raise ProtocolError("command config must be a JSON object")
        if config.get("name") is not None:  # the agent's id, for the demo backend and MemGPT
            _checked_agent_id(config["name"], "config name", "server_error")
        return Command(command, config)
    if kind == "subscribe":
        since = body.get("since")
        if since is not None and (
            not isinstance(since, int) or isinstance(since, bool) or not 0 <= since <= MAX_SEQ
        ):
            raise ProtocolError(f"since must be an integer from 0 to {MAX_SEQ}")
        return Subscribe(_agent_id(body, "server_error"), since)
    if kind == "unsubscribe":
        return Unsubscribe(_agent_id(body, "server_error"))
    if kind == "refresh":
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError("refresh needs a string token")
        return Refresh(token)
    raise ProtocolError(f"unrecognized client package data type: {quote(kind)}")
