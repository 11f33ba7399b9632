"""agentcast itself: a ``Broadcaster`` with its defaults, except pings and what the spec sets."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Sequence
from typing import Any

from agentcast import Broadcaster
from agentcast.bench.peers import HOST, tls_identity

SCRAPE_INTERVAL = 1.0  # seconds, as a Prometheus scrape_interval would be set


class AgentcastPeer:
    """``hub.publish`` from the publisher thread; the hub fans out on its own uvloop thread.

    With ``channels=N`` each client is subscribed at connect to one of N agent
    channels (round-robin) and every message is published to each channel: every
    client gets the same stream as with a broadcast, but through channels, ``seq``
    and history, as N agents publishing at that rate would cause.

    With ``tls=1`` it serves ``wss://`` with a throwaway certificate; ``ca_pem`` is the
    CA the receivers must trust (None without TLS).

    ``route`` subscribes the k-th client to connect from then on to its agent's channel
    (``hub.subscribe`` in ``on_connect``, as the drop-in server subscribes a watcher), and
    ``publish_to`` publishes to that channel: ``seq`` and history on for every message.

    With ``scrape=1`` a thread fetches ``GET /metrics`` from the hub's own port once a
    second, as Prometheus would, while the workload runs (``scrapes`` counts them).

    ``publish_event_to`` hands an agent event to the hub's streams (``publish_event``): the
    core numbers it, encodes it per protocol and merges deltas for a lagging watcher.
    Settings go to the ``Broadcaster`` as they are, but ``notsent_lowat=0``, which leaves
    TCP_NOTSENT_LOWAT to the kernel (None: up to 4 MiB of a slow reader's unmerged frames
    before the core sees it lag), as the defaults before 16 KiB did.
    """

    def __init__(
        self,
        channels: int = 0,
        tls: int = 0,
        scrape: int = 0,
        **settings: Any,
    ) -> None:
        self.scrapes = 0
        self.last_scrape = ""
        self._scrape = bool(scrape)
        self._stopping = threading.Event()
        self._scraper: threading.Thread | None = None
        self.channels = [f"agent-{i}" for i in range(channels)]
        settings["ssl"], self.ca_pem = tls_identity(tls)
        if settings.get("notsent_lowat") == 0:
            settings["notsent_lowat"] = None
        self._route: list[str] = []
        self._routed = 0  # clients subscribed to their agent's channel, on the loop thread
        self.hub = Broadcaster(HOST, port=0, ping_interval=0, on_connect=self._assign, **settings)

    def _assign(self, client_id: int) -> None:
        if self._routed < len(self._route):
            self.hub.subscribe(client_id, self._route[self._routed])
            self._routed += 1
        elif self.channels:
            self.hub.subscribe(client_id, self.channels[client_id % len(self.channels)])

    def route(self, watched: Sequence[str]) -> None:
        self._route, self._routed = list(watched), 0

    def start(self) -> int:
        port = self.hub.start().port
        if self._scrape:
            self._scraper = threading.Thread(target=self._scrape_metrics, args=(port,))
            self._scraper.start()
        return port

    def _scrape_metrics(self, port: int) -> None:
        url = f"http://{HOST}:{port}/metrics"
        while not self._stopping.wait(SCRAPE_INTERVAL):
            with urllib.request.urlopen(url, timeout=5) as response:
                self.last_scrape = response.read().decode()
            self.scrapes += 1

    def publish_to(self, agent: str, obj: Any) -> None:
        self.hub.publish(obj, agent)

    def publish_event_to(self, agent: str, event: dict[str, Any]) -> None:
        self.hub.publish_event(event, agent)

    def stats(self) -> dict[str, int]:
        return self.hub.stats()

    def publish(self, obj: Any) -> None:
        if not self.channels:
            self.hub.publish(obj)
            return
        for channel in self.channels:
            self.hub.publish(obj, channel)

    @property
    def client_count(self) -> int:
        """With a route, the clients subscribed so far: a client is counted once its
        subscribe is queued, so what is published after the count reaches it."""
        return self._routed if self._route else self.hub.client_count

    def stop(self) -> None:
        self._stopping.set()
        if self._scraper is not None:
            self._scraper.join()
        self.hub.stop()
