"""uWebSockets through socketify: subscribe every client to one topic, ``app.publish`` to it.

Optional: socketify ships prebuilt native libraries for a few platforms only,
so it is imported here, and a missing or unloadable socketify makes
``peers.create`` skip this peer. It is imported by name (``importlib``) so the
package type-checks without it.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from agentcast.bench.peers import HOST

socketify = importlib.import_module("socketify")

TOPIC = "all"
START_TIMEOUT = 10.0
BACKPRESSURE = 4 * 1024 * 1024  # per client, like agentcast's client_budget; uWS drops beyond


class SocketifyPeer:
    """uWS' native pub/sub: the topic's frame is built once and written by C++ to each client.

    socketify's loop polls libuv from an asyncio loop in the thread that
    created the ``App``, so the app is built and run in its own thread and
    ``publish`` is scheduled on that loop with ``call_soon_threadsafe``.
    Pings, idle timeouts and compression are off. Many agents: a topic per agent, the
    k-th client subscribed to its agent's topic as ``route`` says, ``publish_to`` to it.
    """

    def __init__(self) -> None:
        self._app: Any = None
        self._clients = 0
        self._route: list[str] = []
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="socketify-peer", daemon=True
        )
        self._thread.start()
        return ready.result(START_TIMEOUT)

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        try:
            app = socketify.App()
            app.ws(
                "/*",
                {
                    "compression": socketify.CompressOptions.DISABLED,
                    "idle_timeout": 0,
                    "send_pings_automatically": False,
                    "max_backpressure": BACKPRESSURE,
                    "open": self._opened,
                    "close": self._closed,
                },
            )
            app.listen({"port": 0, "host": HOST}, lambda config: ready.set_result(config.port))
            self._app = app
        except BaseException as exc:
            ready.set_exception(exc)
            return
        app.loop.run()  # App.run() would install a SIGINT handler: only the main thread may

    def _opened(self, ws: Any) -> None:
        ws.subscribe(self._route[self._clients] if self._clients < len(self._route) else TOPIC)
        self._clients += 1

    def route(self, watched: Sequence[str]) -> None:
        """Set before the clients connect (they are counted from 0)."""
        self._route = list(watched)

    def publish_to(self, agent: str, obj: Any) -> None:
        self._app.loop.loop.call_soon_threadsafe(
            self._app.publish, agent, orjson.dumps(obj), socketify.OpCode.TEXT
        )

    def _closed(self, _ws: Any, _code: int, _message: Any) -> None:
        self._clients -= 1

    def publish(self, obj: Any) -> None:
        self._app.loop.loop.call_soon_threadsafe(
            self._app.publish, TOPIC, orjson.dumps(obj), socketify.OpCode.TEXT
        )

    @property
    def client_count(self) -> int:
        return self._clients

    def stop(self) -> None:
        if self._app is None or self._thread is None:
            return
        self._app.loop.loop.call_soon_threadsafe(self._app.close)
        self._thread.join(START_TIMEOUT)
        self._app = self._thread = None
