"""``Router``: the one shape ``Broadcaster`` talks to, the local core or the Redis backplane.

The publishing calls of ``Broadcaster`` go, unchanged, to a router: ``LocalRouter``
hands them to the fan-out core on this process's loop thread; the backplane
(``agentcast.backplane.redis.RedisBackplane``) numbers them through Redis first,
so that every node delivers them. Either is safe to call from any thread, and
keeps each thread's order of calls.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

from agentcast._ext import FanoutCore

__all__ = ["LocalRouter", "Router"]


class Router(Protocol):
    """Where ``Broadcaster``'s publishing calls go (any thread, never blocking)."""

    def publish(self, obj: Any, channel: Hashable | None = None) -> None: ...
    def publish_json(self, payload: bytes, channel: Hashable | None = None) -> None: ...
    def send(self, client_id: int, obj: Any) -> None: ...
    def send_json(self, client_id: int, payload: bytes) -> None: ...
    def publish_binary(self, data: bytes, channel: Hashable | None = None) -> None: ...
    def send_binary(self, client_id: int, data: bytes) -> None: ...
    def send_control(self, client_id: int, payload: bytes) -> None: ...
    def publish_event(self, event: dict[str, Any], channel: Hashable) -> None: ...
    def subscribe(
        self,
        client_id: int,
        channel: Hashable,
        since: int | None = None,
        ack: bytes | None = None,
    ) -> None: ...
    def unsubscribe(self, client_id: int, channel: Hashable) -> None: ...

    def after_pending(self, function: Callable[[], object]) -> None:
        """Call ``function`` on the loop thread once the calls made before took effect."""

    def stats(self) -> dict[str, int]:
        """The router's own counters (the core's are read from the core)."""

    def unready(self) -> str | None:
        """Why the router cannot deliver now (``/readyz`` says so), or None when it can."""

    async def stop(self, timeout: float) -> None:
        """On the loop thread: deliver what is queued (at most ``timeout`` s), let go."""


class LocalRouter:
    """One process, no broker: each call is the core's own, queued for its loop thread."""

    def __init__(self, core: FanoutCore, call_soon: Callable[[Callable[[], object]], None]) -> None:
        self.publish = core.publish
        self.publish_json = core.publish_json
        self.send = core.send
        self.send_json = core.send_json
        self.publish_binary = core.publish_binary
        self.send_binary = core.send_binary
        self.send_control = core.send_control
        self.publish_event = core.publish_event
        self.subscribe = core.subscribe
        self.unsubscribe = core.unsubscribe
        self._call_soon = call_soon

    def after_pending(self, function: Callable[[], object]) -> None:
        """The core applies subscribes and sends in queue order: the next loop turn."""
        self._call_soon(function)

    def stats(self) -> dict[str, int]:
        return {}

    def unready(self) -> str | None:
        return None

    async def stop(self, timeout: float) -> None:
        """Nothing of its own to deliver: the core drains itself."""
