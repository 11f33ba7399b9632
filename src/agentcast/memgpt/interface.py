"""MemGPT's WebSocket agent interfaces, method for method, publishing through a Broadcaster.

MemGPT's ``SyncWebSocketInterface`` sent every message with a per-client
``asyncio.gather`` of ``send`` calls to every client. Here each call is one
``Broadcaster.publish``: serialized once, queued in O(1), returned at once.
Messages go to the channel of the agent being served (``serving(agent_id)``),
so a client only sees the agents it talks to; ``route="all"`` keeps MemGPT's
everyone-gets-everything. Each agent message carries ``agent_id``; on an agent
channel the core adds ``seq``, a per-channel counter without gaps, in queue order
(``route="all"`` publishes to everyone, so there it has no ``seq``).

With ``route="agent"``, a message emitted outside ``serving()`` (on a thread the
agent started itself, or in ``run_in_executor``: a context variable does not
follow there) belongs to no agent. It is dropped, never broadcast: sending it
to everyone would leak one agent's messages to every other agent's clients.
Raising instead would abort the agent's step in the middle (MemGPT does not
expect its interface to fail), so the drop is counted in ``unrouted`` and
logged once per interface; wrap such code in ``serving(agent_id)``.

The methods are those MemGPT's ``SyncServer`` and ``Agent`` call on an interface, from
``AgentInterface`` and ``server/ws_api/interface.py`` of MemGPT 0.2.3 to 0.3.25 (and
``step_complete``, which ``SyncServer`` calls from 0.3.18 on but only its
``CLIInterface`` defines): a real MemGPT backend runs on them unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any, Literal

from agentcast.backplane.publisher import AsyncPublisher, Publisher
from agentcast.memgpt import protocol
from agentcast.printable import for_log, quote
from agentcast.serve.broadcaster import Broadcaster
from agentcast.serve.foreign import ForeignConnection
from agentcast.streams.producer import Run, new_id

__all__ = ["AsyncWebSocketInterface", "SyncWebSocketInterface"]

log = logging.getLogger("agentcast.interface")

Route = Literal["agent", "all"]
Hub = Broadcaster | Publisher | AsyncPublisher

_serving: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentcast_agent", default=None
)
_running: contextvars.ContextVar[Run | None] = contextvars.ContextVar("agentcast_run", default=None)

# MemGPT's message types as messages of the event model: (role, kind).
_AS_MESSAGE: dict[str, tuple[str, str]] = {
    "internal_monologue": ("assistant", "reasoning"),
    "assistant_message": ("assistant", "text"),
    "function_message": ("tool", "text"),
}


class _WebSocketInterface:
    """What the sync and async interfaces share: routing, seq numbers, client registry."""

    def __init__(self, hub: Hub | None = None, *, route: Route = "all") -> None:
        if route not in ("agent", "all"):
            raise ValueError(f"route must be 'agent' or 'all', not {route!r}")
        self._owns_hub = hub is None
        self.hub: Hub = hub if hub is not None else Broadcaster(port=None).start()
        self.route = route
        self._foreign: dict[int, ForeignConnection] = {}
        self._unrouted = 0
        self._unrouted_lock = threading.Lock()

    @property
    def unrouted(self) -> int:
        """Agent messages dropped because no ``serving()`` named their agent (route "agent")."""
        return self._unrouted

    @contextlib.contextmanager
    def serving(self, agent_id: str) -> Iterator[None]:
        """Within this block (in this thread or task), agent messages belong to ``agent_id``."""
        token = _serving.set(agent_id)
        try:
            yield
        finally:
            _serving.reset(token)

    @contextlib.contextmanager
    def step(self, agent_id: str, prompt: str | None = None) -> Iterator[Run | None]:
        """One MemGPT step of ``agent_id`` as a run on its channel (route "agent"):
        ``run_start`` (with ``prompt``, the user's message it answers, if given), the
        step's messages, then ``run_end`` (``run_error`` if it raised).
        Within it the agent's messages belong to ``agent_id`` (as in ``serving``) and
        ``current_run()`` is the run, for a backend that streams."""
        run = None
        if self.route == "agent":
            run = Run(self.hub.publish_event, agent_id, prompt=prompt)
        token = _running.set(run)
        try:
            with self.serving(agent_id):
                if run is None:
                    yield None
                else:
                    with run:
                        yield run
        finally:
            _running.reset(token)

    @staticmethod
    def current_run() -> Run | None:
        """The run of the step being served in this thread or task (``step``), else None."""
        return _running.get()

    def _emit(self, message_type: protocol.MessageType, msg: str) -> None:
        agent_id = _serving.get()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: %s", agent_id, message_type, for_log(msg))
        if self.route == "all":
            self.hub.publish_json(protocol.agent_response(message_type, msg, agent_id), None)
        elif agent_id is not None:
            role, kind = _AS_MESSAGE[message_type]
            event = {"type": "message", "message_id": new_id("msg"), "role": role,
                     "kind": kind, "content": msg}  # fmt: skip
            self.hub.publish_event(event, agent_id)
        else:
            self._drop_unrouted(message_type)

    def _drop_unrouted(self, message_type: protocol.MessageType) -> None:
        with self._unrouted_lock:
            self._unrouted += 1
            first = self._unrouted == 1
        if first:
            log.warning(
                "%s emitted outside serving(agent_id) with route='agent': dropped, not "
                "broadcast (further drops are only counted in interface.unrouted)",
                message_type,
            )

    def register_client(self, websocket: Any) -> None:
        """Deliver to a connection of another server (anything with an async ``send(str)``).

        Connections to the Broadcaster itself are registered when they connect;
        passing one of their client ids is accepted and does nothing.
        """
        if isinstance(websocket, int):
            return
        if not isinstance(self.hub, Broadcaster):
            raise TypeError("a Publisher holds no clients: connect them to a Broadcaster node")
        connection = ForeignConnection(self.hub, websocket)
        self._foreign[id(websocket)] = connection

    def unregister_client(self, websocket: Any) -> None:
        connection = self._foreign.pop(id(websocket), None)
        if connection is not None:
            connection.detach()

    def user_message(self, msg: str, msg_obj: Any = None) -> None:
        """MemGPT calls this for the user's own message; nothing is sent (as in MemGPT)."""
        if log.isEnabledFor(logging.DEBUG):  # a client's input: an excerpt only
            log.debug("user message: %s", quote(msg))

    def step_yield(self) -> None:
        """MemGPT's ``SyncServer`` (0.2.8 on) calls this when the agent yields after a
        user message. A no-op, as in MemGPT's own WebSocket interface: the server sends
        ``agent_response_end`` once ``user_message`` returns."""

    def step_complete(self) -> None:
        """MemGPT's ``SyncServer`` (0.3.18 on) calls this after each step of a chain. A
        no-op, as in MemGPT's ``CLIInterface``: the steps of one user message are one
        reply, ended by ``agent_response_end``."""

    def close(self) -> None:
        """Stop the Broadcaster if this interface created it."""
        for websocket_id in list(self._foreign):
            self._foreign.pop(websocket_id).detach()
        if self._owns_hub and isinstance(self.hub, Broadcaster):
            self.hub.stop()


class SyncWebSocketInterface(_WebSocketInterface):
    """For agent code on any thread: every call returns at once."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The Broadcaster's event loop (MemGPT's interface owned one too)."""
        return None if isinstance(self.hub, AsyncPublisher) else self.hub.loop

    @property
    def thread(self) -> threading.Thread | None:
        return None if isinstance(self.hub, AsyncPublisher) else self.hub.thread

    def internal_monologue(self, msg: str, msg_obj: Any = None) -> None:
        self._emit("internal_monologue", msg)

    def assistant_message(self, msg: str, msg_obj: Any = None) -> None:
        self._emit("assistant_message", msg)

    def function_message(self, msg: str, msg_obj: Any = None) -> None:
        self._emit("function_message", msg)


class AsyncWebSocketInterface(_WebSocketInterface):
    """For agent code on an event loop: ``await`` returns once the message is queued."""

    async def internal_monologue(self, msg: str, msg_obj: Any = None) -> None:
        self._emit("internal_monologue", msg)

    async def assistant_message(self, msg: str, msg_obj: Any = None) -> None:
        self._emit("assistant_message", msg)

    async def function_message(self, msg: str, msg_obj: Any = None) -> None:
        self._emit("function_message", msg)
