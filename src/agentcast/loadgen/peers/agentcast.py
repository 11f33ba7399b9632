"""agentcast itself: a ``Broadcaster`` with its defaults, except pings and what the spec sets."""

from __future__ import annotations

from typing import Any

from agentcast import Broadcaster
from agentcast.loadgen.peers import HOST


class AgentcastPeer:
    """``hub.publish`` from the publisher thread; the hub fans out on its own uvloop thread.

    With ``channels=N`` each client is subscribed at connect to one of N agent
    channels (round-robin) and every message is published to each channel: every
    client gets the same stream as with a broadcast, but through channels, ``seq``
    and history, as N agents publishing at that rate would cause.

    With ``tls=1`` it serves ``wss://`` with a throwaway certificate; ``ca_pem`` is the
    CA the receivers must trust (None without TLS).
    """

    def __init__(self, channels: int = 0, tls: int = 0, **settings: Any) -> None:
        self.channels = [f"agent-{i}" for i in range(channels)]
        self.ca_pem: str | None = None
        if tls:
            from agentcast.loadgen.tls import ThrowawayTLS  # trustme: the bench extra

            identity = ThrowawayTLS(HOST)
            settings["ssl"] = identity.server_context()
            self.ca_pem = identity.ca_pem
        on_connect = self._assign if channels else None
        self.hub = Broadcaster(HOST, port=0, ping_interval=0, on_connect=on_connect, **settings)

    def _assign(self, client_id: int) -> None:
        self.hub.subscribe(client_id, self.channels[client_id % len(self.channels)])

    def start(self) -> int:
        return self.hub.start().port

    def publish(self, obj: Any) -> None:
        if not self.channels:
            self.hub.publish(obj)
            return
        for channel in self.channels:
            self.hub.publish(obj, channel)

    @property
    def client_count(self) -> int:
        return self.hub.client_count

    def stop(self) -> None:
        self.hub.stop()
