"""The drop-in MemGPT WebSocket server: parse, dispatch, run the agent off the loop thread.

``user_message`` answers ``agent_response_start`` at once, runs the backend in
a bounded worker pool, and queues ``agent_response_end`` after the backend
returns: every message the step produced was queued before it on the same
ordered path, so no ``sleep`` is needed. The requesting client is subscribed
to the agent's channel; ``route="all"`` sends every agent to every client.

With ``authenticate``, every request naming an agent is checked against the client's
``Identity``: ``user_message`` needs ``may_talk``, ``subscribe`` (live and replay) and
``unsubscribe`` need ``may_read``, ``create_agent`` needs ``admin``. A refusal is a
``forbidden`` error frame, counted in ``stats()["forbidden"]`` and logged once per
connection; the connection stays usable. ``route="all"`` cannot be combined with it:
it would send every agent to every client.

Replies that no agent message has to precede (errors, refusals, a command's answer) go
as control frames (``send_control``): they overtake what a lagging client has queued in
the core. The step's markers and an unsubscribe's ack stay in order with the messages.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from agentcast.memgpt import protocol
from agentcast.memgpt.backends import Backend, DemoAgentServer, check_backend
from agentcast.memgpt.interface import Route, SyncWebSocketInterface
from agentcast.printable import clip
from agentcast.serve.auth import Refused
from agentcast.serve.broadcaster import Broadcaster
from agentcast.serve.forever import serve_forever
from agentcast.streams.acks import ACKS, MemgptAcks, NativeAcks

log = logging.getLogger("agentcast.app")

BackendFactory = Callable[..., Backend]

# A backend's exception text is kept up to this many characters in error frames and log
# lines: it may say more than an excerpt of client input does, and may repeat that input.
ERROR_LIMIT = 200


class AgentServer:
    """Broadcaster + interface + backend + worker pool, started and stopped as one."""

    def __init__(
        self,
        backend: BackendFactory = DemoAgentServer,
        host: str = "127.0.0.1",
        port: int = 8282,
        *,
        route: Route = "agent",
        workers: int = 8,
        max_in_flight: int = 4,
        user_id: str = "NULL",
        **broadcaster_options: Any,
    ) -> None:
        if workers < 1 or max_in_flight < 1:
            raise ValueError("workers and max_in_flight must be at least 1")
        self.hub = Broadcaster(
            host,
            port,
            on_message=self._on_message,
            on_binary=self._on_binary,
            **broadcaster_options,
        )
        if route == "all" and self.hub.authenticating:
            raise ValueError(
                "route 'all' sends every agent to every client: it cannot be combined with"
                " authentication (use route 'agent')"
            )
        self.interface = SyncWebSocketInterface(self.hub, route=route)
        self.backend = backend(default_interface=self.interface)
        check_backend(self.backend)
        self.route = route
        self.user_id = user_id
        self.max_in_flight = max_in_flight
        self._workers = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_flight: Counter[int] = Counter()
        self._lock = threading.Lock()

    def start(self) -> AgentServer:
        self._pool = concurrent.futures.ThreadPoolExecutor(self._workers, "agentcast-worker")
        try:
            self.hub.start()
        except BaseException:
            self._pool.shutdown()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Let running agent steps finish, then close clients (1001) and stop."""
        pool, self._pool = self._pool, None
        if pool is not None:  # requests still queued are cancelled: told "shutting down"
            pool.shutdown(wait=True, cancel_futures=True)
        self.hub.stop(timeout)

    def serve_forever(
        self, timeout: float = 5.0, ready: Callable[[], object] | None = None
    ) -> dict[str, int]:
        """Start unless running, block until SIGINT or SIGTERM, then ``stop(timeout)``.

        ``ready()`` is called once it serves and the signals are caught. Returns
        ``stats()`` as they stood when the signal came. Main thread only.
        """
        return serve_forever(self, timeout, ready)

    @property
    def running(self) -> bool:
        return self.hub.running

    def stats(self) -> dict[str, int]:
        """The Broadcaster's counters (see ``Broadcaster.stats``)."""
        return self.hub.stats()

    def __enter__(self) -> AgentServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.hub.port

    # ---- on the loop thread -------------------------------------------------

    def _on_binary(self, client_id: int, data: bytes) -> None:
        self.hub.send_control(
            client_id, protocol.server_error("binary frames are not supported; send JSON text")
        )

    def _on_message(self, client_id: int, data: bytes) -> None:
        try:
            message = protocol.parse_client_message(data)
        except protocol.ProtocolError as exc:
            if self.hub.record_invalid_request(client_id):
                log.info(
                    "client %d: %s; further ones on this connection are only counted",
                    client_id,
                    exc,
                )
            self.hub.send_control(client_id, exc.reply)
            return
        if isinstance(message, protocol.Refresh):
            self._refresh(client_id, message.token)
        elif not self._permits(client_id, message):
            return
        elif isinstance(message, protocol.Subscribe):
            # The ack goes out once the subscription holds, then the replay, then live;
            # beyond max_subscriptions the client gets too_many_subscriptions instead.
            ack = self._acks(client_id).subscribed(message.agent_id)
            self.hub.subscribe(client_id, message.agent_id, message.since, ack=ack)
        elif isinstance(message, protocol.Unsubscribe):
            self.hub.unsubscribe(client_id, message.agent_id)
            self.hub.send_json(client_id, self._acks(client_id).unsubscribed(message.agent_id))
        elif not self._admit(client_id):
            self.hub.send_control(
                client_id, protocol.server_error("busy: too many requests in flight")
            )
        elif isinstance(message, protocol.UserMessage):
            if self.route == "agent":
                self.hub.subscribe(client_id, message.agent_id)
            self.hub.send_json(client_id, protocol.agent_response_start(message.agent_id))
            # The step starts once the subscription is in effect (with a backplane that
            # takes a round trip), so the client gets everything the agent says.
            self.hub.after_pending(
                lambda: self._submit(client_id, self._run_step, client_id, message)
            )
        else:
            self._submit(client_id, self._create_agent, client_id, message)

    def _acks(self, client_id: int) -> type[MemgptAcks] | type[NativeAcks]:
        """The acks in the client's wire protocol."""
        return ACKS[self.hub.encoding(client_id)]

    def _permits(self, client_id: int, message: protocol.Request) -> bool:
        """Whether the client's identity allows ``message``; if not, say so (forbidden)."""
        if not self.hub.authenticating:
            return True  # no authentication: the open MemGPT behaviour
        identity = self.hub.identity(client_id)
        agent_id = None
        if isinstance(message, protocol.Command):
            action, allowed = "create agents", identity is not None and identity.admin
        else:
            agent_id = message.agent_id
            if isinstance(message, protocol.UserMessage):
                action = "talk to this agent"
                allowed = identity is not None and identity.may_talk(agent_id)
            else:
                action = "read this agent"
                allowed = identity is not None and identity.may_read(agent_id)
        if allowed:
            return True
        if self.hub.record_forbidden(client_id):
            log.warning(
                "client %d (sub %s): not allowed to %s (%.64r); further refusals on this"
                " connection are only counted",
                client_id,
                None if identity is None else identity.sub,
                action,
                agent_id,
            )
        self.hub.send_control(client_id, protocol.forbidden(action, agent_id))
        return False

    def _refresh(self, client_id: int, token: str) -> None:
        try:
            self.hub.refresh(client_id, token)
        except Refused as refused:
            self.hub.send_control(client_id, protocol.unauthorized(f"refresh refused: {refused}"))
        else:
            self.hub.send_control(client_id, protocol.command_response("OK: token refreshed"))

    def _admit(self, client_id: int) -> bool:
        with self._lock:
            if self._in_flight[client_id] >= self.max_in_flight:
                return False
            self._in_flight[client_id] += 1
            return True

    def _submit(self, client_id: int, work: Callable[..., None], *args: Any) -> None:
        pool = self._pool
        future = None
        if pool is not None:
            with contextlib.suppress(RuntimeError):  # stop() shut the pool down meanwhile
                future = pool.submit(work, *args)
        if future is None:
            self._refuse(client_id)
        else:
            future.add_done_callback(functools.partial(self._finished, client_id))

    def _refuse(self, client_id: int) -> None:
        self._release(client_id)
        self.hub.send_control(client_id, protocol.server_error("server is shutting down"))

    # ---- on a worker thread, or in stop() for a request it cancels -----------

    def _finished(self, client_id: int, future: concurrent.futures.Future[None]) -> None:
        """Every admitted request ends here: done, failed, or cancelled by ``stop()``."""
        if future.cancelled():
            self._refuse(client_id)
            return
        error = future.exception()
        if error is not None:
            log.error("client %d: request failed", client_id, exc_info=error)
        self._release(client_id)

    def _release(self, client_id: int) -> None:
        with self._lock:
            self._in_flight[client_id] -= 1
            if self._in_flight[client_id] <= 0:
                del self._in_flight[client_id]

    def _run_step(self, client_id: int, message: protocol.UserMessage) -> None:
        try:
            with self.interface.step(message.agent_id, prompt=message.message):
                self.backend.user_message(self.user_id, message.agent_id, message.message)
        except Exception as exc:
            reason = clip(str(exc), ERROR_LIMIT)  # it may repeat the client's input
            log.warning("agent %s failed: %s", message.agent_id, reason)
            self.hub.send_json(
                client_id,
                protocol.agent_response_error(f"server.user_message failed with: {reason}"),
            )
        self.hub.send_json(client_id, protocol.agent_response_end(message.agent_id))

    def _create_agent(self, client_id: int, message: protocol.Command) -> None:
        try:
            self.backend.create_agent(self.user_id, agent_config=message.config)
        except Exception as exc:
            reason = clip(str(exc), ERROR_LIMIT)
            log.warning("create_agent failed: %s", reason)
            status = f"Error: Failed to init agent - {reason}"
        else:
            status = "OK: Agent initialized"
        self.hub.send_control(client_id, protocol.command_response(status))
