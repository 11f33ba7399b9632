"""agentcast itself: a ``Broadcaster`` with its defaults, except pings and what the spec sets."""

from __future__ import annotations

from typing import Any

from agentcast import Broadcaster
from agentcast.loadgen.peers import HOST


class AgentcastPeer:
    """``hub.publish`` from the publisher thread; the hub fans out on its own uvloop thread."""

    def __init__(self, **settings: Any) -> None:
        self.hub = Broadcaster(HOST, port=0, ping_interval=0, **settings)

    def start(self) -> int:
        return self.hub.start().port

    def publish(self, obj: Any) -> None:
        self.hub.publish(obj)

    @property
    def client_count(self) -> int:
        return self.hub.client_count

    def stop(self) -> None:
        self.hub.stop()
