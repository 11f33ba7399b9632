"""``Broadcaster``: the public face of the fan-out core, its loop thread and its server."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

from agentcast._ext import ConnectionStats, FanoutCore, Sink
from agentcast._fanout import LAG_THRESHOLD as LAG_THRESHOLD  # re-exported for the CLI
from agentcast._fanout import MAX_CHANNELS as MAX_CHANNELS  # re-exported for the CLI
from agentcast._fanout import SWEEP_BATCH
from agentcast.backplane import require_redis
from agentcast.serve.acceptor import Acceptor
from agentcast.serve.admission import ConnectionAdmission
from agentcast.serve.auth import Authenticate, Identity
from agentcast.serve.connect_log import ConnectLog
from agentcast.serve.forever import serve_forever
from agentcast.serve.gate import Gate
from agentcast.serve.heap import DEFAULT_TRIM_THRESHOLD, keep_heap
from agentcast.serve.http import HttpEndpoints, Probes, serve_plain
from agentcast.serve.logs import OncePerClient
from agentcast.serve.loop import LoopThread
from agentcast.serve.metrics import LatencyHistogram, registry_for
from agentcast.serve.origins import OriginPolicy
from agentcast.serve.page import Page
from agentcast.serve.payloads import check_channel_json, check_channel_object
from agentcast.serve.router import LocalRouter, Router
from agentcast.serve.server import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_NOTSENT_LOWAT,
    MessageHandler,
    ServerOptions,
    start_server,
)
from agentcast.serve.sessions import Sessions
from agentcast.serve.sse import SseEndpoints, check_chat_api
from agentcast.streams.codec import EventCodec
from agentcast.streams.events import check_channel, check_event
from agentcast.streams.producer import Run
from agentcast.streams.runs import OpenRuns

log = logging.getLogger("agentcast")

GOING_AWAY = 1001
SHUTDOWN_REASON = "server shutting down"
SWEEP_INTERVAL_MAX = 30.0  # seconds between sweeps for idle channels, whatever channel_ttl
DEFAULT_MAX_MESSAGE_RATE = 100.0  # messages a second one client may send (bursts that many)


class _NotRunning:
    """Stands in for the core and the router before start() and after stop(): every use
    says so."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the Broadcaster is not running: call start() first")


_NOT_RUNNING: Any = _NotRunning()


class Broadcaster:
    """Push JSON messages to every WebSocket client, or to a channel's subscribers.

    Nothing runs until ``start()``. The publishing calls (``publish``,
    ``publish_json``, ``send``, ``subscribe``, ``unsubscribe``) are safe from
    any thread, never block on clients, and cost the same whatever the number
    of clients: each is one serialization (if any) and an O(1) append to one
    ordered queue. Messages from one thread reach each client in the order that
    thread made the calls. A client whose unsent bytes exceed ``client_budget``
    is closed with 1013 (``slow_consumer="close"``); with ``"skip"`` it gets
    nothing more until it has drained to half its budget, then, with the next
    message, a ``{"type": "server_error", "code": "skipped", "ranges": [...]}``
    notice naming the seqs it missed per channel. The others are not slowed down.

    ``on_message(client_id, data)`` runs on the loop thread for every text
    message a client sends; it must return quickly. ``on_binary`` likewise for
    binary messages (without it, a binary message closes the client with 1003).
    ``on_connect(client_id)`` runs there once a new client is registered (to
    subscribe it to a default channel, say).
    ``flush_interval`` (seconds) paces writes to at most one round per interval,
    trading latency for CPU left to the agent. ``release_gil`` releases the GIL
    while the kernel copies a round of sends, which pays only when the agent
    has a core of its own. ``max_clients`` caps connections: the next one is
    answered with HTTP 503 at upgrade. A client sending more than
    ``max_message_rate`` messages a second (bursts up to that many) is closed
    with 1008; 0 disables the limit. Every frame counts: a message's first frame, a ping
    and an unsolicited pong as one message, each further fragment as 1/16 of one.
    One IP address may hold ``max_connections_per_ip``
    connections (the next is answered HTTP 503 at upgrade) and open new ones at
    ``max_connect_rate`` a second, bursts up to the cap (beyond: HTTP 429). Both are
    off by default (None, 0): behind a reverse proxy every client has the proxy's
    address; ``agentcast serve`` sets them. ``reuse_port`` lets several processes
    listen on one port (SO_REUSEPORT: the kernel spreads the connections).
    ``ssl`` (a server ``SSLContext``) serves ``wss://``: every client's bytes are then
    encrypted separately, so the core writes through each connection's TLS transport
    instead of sending the shared frame bytes to its socket directly. ``transport``
    (None) picks uvloop's transports for ``ws://`` (less memory per client) and
    aiofastnet's for ``wss://`` (its TLS costs less CPU per delivery).

    A native-protocol client whose transport holds more than ``lag_threshold`` bytes lags:
    what comes for it waits in the core, where consecutive deltas of one message or tool
    call merge into one frame (byte-identical text, ``from_seq``..``seq``), until it
    drains; ``client_budget`` still bounds it. ``notsent_lowat`` (TCP_NOTSENT_LOWAT) is
    what the kernel holds unsent per agent event stream connection (MemGPT's keep Linux's
    own: their frames never merge). By default (None) Linux's own lets a slow reader queue
    up to 4 MiB of unmerged frames before it lags; at 16 KiB it lags after about 25 KB and
    its deltas merge, but merging costs server CPU per delta per laggard: on the tokens
    workload the other watchers' p99 rose (bench/RESULTS.md).

    A client holds at most ``max_subscriptions`` channels (None: no limit); a
    subscribe beyond is not applied, the client gets a ``{"type": "server_error",
    "code": "too_many_subscriptions", "agent_id": ..., "limit": N}`` notice, and
    it is counted (``refused_subscriptions``).

    Every message published to a channel gets ``"seq": N`` (a per-channel
    counter from 1, no gaps, in queue order) added to its JSON object, and the
    last ``history_size`` frames (at most ``history_bytes``) are kept, so a
    client can ``subscribe(..., since=N)`` after a reconnect and miss nothing.
    A channel nobody has subscribed to, published on or left for ``channel_ttl``
    seconds is freed with its history (a timer sweeps every ``channel_ttl / 4``,
    at most 30 s; None: never): a late resume gets a ``channel_restarted`` notice
    and its seq starts again at 1. All channels together keep at most ``history_total_bytes``
    of history: beyond it the oldest frames of the least recently used channels go.
    At most ``max_channels`` channels exist at once (subscribed to or kept for a
    resume): a new one beyond evicts the least recently used channel nobody
    subscribes to, and when every one has subscribers a subscribe to a new one is
    refused with a ``too_many_channels`` notice (counted, ``refused_channels``). A
    channel costs about 300 bytes without its history (measured with tracemalloc over
    100,000 of them: 198 bytes of core state, plus its id: 91 bytes for 42
    characters), so the default of 100,000 holds about 30 MiB however many ids
    clients make up (through `agentcast serve`: +31 MiB RSS at the cap, flat after).

    With ``backplane="redis://host:port/db"`` every node started with the same
    URL delivers every channel's messages to its own subscribers: Redis numbers
    them (``seq`` is contiguous across nodes), keeps ``history_size`` of them
    for ``since``, and announces them; channels are then strings (agent ids).
    ``start`` raises if Redis cannot be reached; later outages are ridden out
    (publishes wait in a queue of ``backplane_max_pending``, then catch up).
    Broadcasts are numbered and kept by Redis too (their frames carry no seq):
    each node delivers each one once, in order, or a ``broadcasts_lost`` notice
    with ``"agent_id": null`` where some were lost.

    ``start`` sets glibc's heap trim threshold to ``heap_trim_threshold``
    (process-wide; see ``agentcast.serve.heap``): a tick frees many messages at once,
    and trimming would hand those pages to the kernel only to fault them back
    in for the next ones. ``None`` leaves the allocator as it is.

    ``authenticate(request)`` (e.g. ``agentcast.serve.auth.JWTAuthenticator``) runs at every
    upgrade, on the loop thread: it returns the client's ``Identity`` (``None``:
    anonymous) or raises ``Refused``, answered with HTTP 401; ``identity(client_id)``
    reads it back. A client whose identity has ``expires_at`` is closed then with 3005
    unless ``refresh`` moved it. A browser ``Origin`` other than the server's own is
    answered 403 unless it matches one of ``allowed_origins`` (globs, case-insensitive);
    without ``authenticate`` the own origin counts only for an IP address or
    ``localhost`` (a DNS name could be rebound to this server: see ``agentcast.serve.origins``).
    ``GET /healthz``, ``/readyz`` and ``/metrics`` are answered on ``port``, or on
    ``metrics_host:metrics_port`` (plain HTTP; loopback unless told otherwise) when
    ``metrics_port`` is set; ``/metrics`` asks for a token there too. The live page
    (``GET /``, ``agentcast.serve.page``) is always on ``port``, where its WebSocket connects.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = 8282,
        on_message: MessageHandler | None = None,
        *,
        on_binary: MessageHandler | None = None,
        on_connect: Callable[[int], None] | None = None,
        default: Callable[[Any], Any] | None = None,
        client_budget: int = 4 * 1024 * 1024,
        max_batch_bytes: int = 256 * 1024,
        flush_interval: float = 0.0,
        release_gil: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        handshake_timeout: float = 5.0,
        close_grace: float = 2.0,
        max_clients: int | None = None,
        max_message_rate: float = DEFAULT_MAX_MESSAGE_RATE,
        max_connections_per_ip: int | None = None,
        max_connect_rate: float = 0.0,
        history_size: int = 1000,
        history_bytes: int = 1024 * 1024,
        max_subscriptions: int | None = 128,
        channel_ttl: float | None = 300.0,
        history_total_bytes: int = 256 * 1024 * 1024,
        max_channels: int = MAX_CHANNELS,
        slow_consumer: Literal["close", "skip"] = "close",
        transport: Literal["uvloop", "aiofastnet"] | None = None,
        backplane: str | None = None,
        backplane_max_pending: int = 100_000,
        reuse_port: bool = False,
        notsent_lowat: int | None = DEFAULT_NOTSENT_LOWAT,
        ssl: ssl_module.SSLContext | None = None,
        heap_trim_threshold: int | None = DEFAULT_TRIM_THRESHOLD,
        authenticate: Authenticate | None = None,
        allowed_origins: Sequence[str] = (),
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        lag_threshold: int = LAG_THRESHOLD,
        max_run_bytes: int = 8 * 1024 * 1024,
        max_open_runs_bytes: int = 256 * 1024 * 1024,
        chat_api: str = "/api/chat",
    ) -> None:
        if backplane is not None:
            require_redis()
        self._chat_api = check_chat_api(chat_api)
        self.host = host
        self._requested_port = port
        self._on_message = on_message
        self._on_binary = on_binary
        self._on_connect = on_connect
        self._core_options: dict[str, Any] = {
            "default": default,
            "client_budget": client_budget,
            "max_batch_bytes": max_batch_bytes,
            "flush_interval": flush_interval,
            "release_gil": release_gil,
            "history_size": history_size,
            "history_bytes": history_bytes,
            "slow_consumer": slow_consumer,
            "max_subscriptions": max_subscriptions,
            "channel_ttl": channel_ttl,
            "history_total_bytes": history_total_bytes,
            "max_channels": max_channels,
            "lag_threshold": lag_threshold,
        }
        self._run_bounds = (max_run_bytes, max_open_runs_bytes)
        self.options = ServerOptions(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            handshake_timeout=handshake_timeout,
            close_grace=close_grace,
            max_clients=max_clients,
            max_message_rate=max_message_rate,
            max_connections_per_ip=max_connections_per_ip,
            max_connect_rate=max_connect_rate,
            transport=transport,
            reuse_port=reuse_port,
            notsent_lowat=notsent_lowat,
            ssl=ssl,
        )
        self.backplane_url = backplane
        self._backplane_max_pending = backplane_max_pending
        self._default = default
        self._heap_trim_threshold = heap_trim_threshold
        origins = OriginPolicy(
            allowed_origins, secure=ssl is not None, host_names=authenticate is not None
        )
        self._gate = Gate(origins, authenticate)
        self._sessions: Sessions | None = None
        self._thread = LoopThread()
        self._core: Any = _NOT_RUNNING
        self._router: Router = _NOT_RUNNING  # the core's, or the backplane in front of it
        self._server: Acceptor | None = None
        self._admission: ConnectionAdmission | None = None
        self._connections: ConnectionStats | None = None
        self._connect_log: ConnectLog | None = None
        self._sse: SseEndpoints | None = None
        self._unready_answers = 0
        self._invalid_requests = 0
        self._invalid_logged = OncePerClient()
        self._attached: set[int] = set()  # clients of attach(), not connections
        self._sweeper: asyncio.TimerHandle | None = None
        self._port: int | None = None
        self._requested_metrics_port = metrics_port
        self.metrics_host = metrics_host
        self._metrics_server: asyncio.Server | None = None
        self.metrics_registry = registry_for(self)  # what GET /metrics exposes

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> Broadcaster:
        """Start the loop thread and the server; return once listening.

        Errors (port in use, bad host) are raised here, in the caller's thread.
        With ``port=None`` no server listens: clients come only through ``attach``.
        """
        if self._thread.running:
            raise RuntimeError("the Broadcaster is already running")
        if self._heap_trim_threshold is not None:
            keep_heap(self._heap_trim_threshold)
        self._thread = LoopThread()
        self._port = self._thread.start(self._setup)
        return self

    async def _setup(self) -> int | None:
        loop = asyncio.get_running_loop()
        max_run_bytes, max_open_runs_bytes = self._run_bounds
        codec = EventCodec(OpenRuns(max_run_bytes, max_open_runs_bytes))
        core = FanoutCore(loop, codec=codec, **self._core_options)
        self._core = core
        self._unready_answers = self._invalid_requests = 0  # counters start with the core
        if self._core_options["channel_ttl"] is not None:
            self._sweep_idle_channels()
        self._router = await self._start_router(core)
        metrics_port = self._requested_metrics_port
        port = None
        if self._requested_port is not None:  # the page, and the probes unless they have a port
            page = Page(lambda: core.client_count, self._gate)
            routes = page.routes()
            if metrics_port is None:
                routes |= Probes(self.metrics_registry, self._readiness, self._gate).routes()
            port = await self._listen(core, HttpEndpoints(routes))
        if metrics_port is not None:
            probes = Probes(self.metrics_registry, self._readiness, self._gate)
            self._metrics_server = await serve_plain(
                HttpEndpoints(probes.routes()), self.metrics_host, metrics_port
            )
        return port

    async def _listen(self, core: FanoutCore, http: HttpEndpoints | None) -> int:
        loop = asyncio.get_running_loop()
        if self._gate.authenticate is not None:
            self._sessions = Sessions(core, loop)
        self._admission = ConnectionAdmission(
            self.options.max_connections_per_ip, self.options.max_connect_rate
        )
        self._connections = ConnectionStats()
        self._connect_log = ConnectLog(logging.getLogger("agentcast.server"), loop.call_later)
        self._sse = SseEndpoints(
            core,
            self._router.subscribe,
            self._router.after_pending,
            self._gate,
            self._sessions,
            max_clients=self.options.max_clients,
            heartbeat=self.options.ping_interval,
            close_grace=self.options.close_grace,
            notsent_lowat=self.options.notsent_lowat,
            chat_api=self._chat_api,
        )
        assert self._requested_port is not None
        self._server = await start_server(
            core,
            self.host,
            self._requested_port,
            self.options,
            self._on_message,
            self._on_binary,
            self._on_connect,
            self._gate,
            self._sessions,
            self._admission,
            http,
            self._connections,
            self._connect_log,
            self._sse,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        log.debug("agentcast listening on %s:%d", self.host, port)
        return port

    def _readiness(self) -> str | None:
        """Why ``/readyz`` answers 503 (each such answer counted), or None: ready."""
        reason = self._router.unready()
        if reason is not None:
            self._unready_answers += 1
        return reason

    def _sweep_idle_channels(self) -> None:
        """On the loop thread, every ``channel_ttl / 4`` (at most 30 s): free idle channels.
        One sweep does bounded work; with more left to free, the next comes at once (after
        what is ready on the loop), not an interval later."""
        loop = asyncio.get_running_loop()
        more = self._core.sweep_idle(loop.time()) == SWEEP_BATCH
        interval = min(self._core_options["channel_ttl"] / 4, SWEEP_INTERVAL_MAX)
        self._sweeper = loop.call_later(0.0 if more else interval, self._sweep_idle_channels)

    async def _start_router(self, core: FanoutCore) -> Router:
        if self.backplane_url is None:
            return LocalRouter(core, self._thread.call_soon_threadsafe)
        from agentcast.backplane.redis import RedisBackplane  # needs the redis extra

        backplane = RedisBackplane(
            self.backplane_url,
            core,
            history_size=self._core_options["history_size"],
            channel_ttl=self._core_options["channel_ttl"],
            max_pending=self._backplane_max_pending,
            default=self._default,
        )
        await backplane.start()
        return backplane

    def stop(self, timeout: float = 5.0) -> None:
        """Close every client with 1001 after what is queued for it, then stop the thread.

        Returns within ``timeout`` seconds (plus a moment to join the thread);
        clients still connected then are aborted. Calling it again does nothing.
        """
        self._thread.stop(lambda: self._shutdown(timeout), timeout + 1.0)
        self._core = self._router = _NOT_RUNNING
        self._server = self._admission = self._connections = self._connect_log = self._sse = None
        self._sessions = None

    async def _shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        core, server = self._core, self._server
        if self._sweeper is not None:
            self._sweeper.cancel()
        if server is not None:
            server.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        await self._router.stop(timeout / 2)
        core.flush()
        core.close_all(GOING_AWAY, SHUTDOWN_REASON)
        for client_id in list(self._attached):  # told; no connection of theirs to close
            core.remove_client(client_id)
        self._attached.clear()
        while core.client_count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if core.client_count:
            log.warning("%d clients still connected at shutdown; aborting them", core.client_count)
            core.abort_all()
            await asyncio.sleep(0)
        if self._connect_log is not None:  # the connections left out of the log, counted
            self._connect_log.close()

    def serve_forever(
        self, timeout: float = 5.0, ready: Callable[[], object] | None = None
    ) -> dict[str, int]:
        """Start unless running, block until SIGINT or SIGTERM, then ``stop(timeout)``.

        For a script whose only job is serving (``agentcast serve`` uses it): publish
        from other threads meanwhile. ``ready()`` is called once it serves and the
        signals are caught. Returns ``stats()`` as they stood when the signal came.
        Main thread only (signals are delivered there).
        """
        return serve_forever(self, timeout, ready)

    def __enter__(self) -> Broadcaster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("the Broadcaster is not listening (never started, or port=None)")
        return self._port

    @property
    def metrics_port(self) -> int:
        """The bound port of ``/healthz``, ``/readyz`` and ``/metrics`` with ``metrics_port``."""
        if self._metrics_server is None:
            raise RuntimeError("no metrics port (not running, or metrics_port=None)")
        port: int = self._metrics_server.sockets[0].getsockname()[1]
        return port

    @property
    def running(self) -> bool:
        return self._thread.running

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop thread's event loop (None when stopped)."""
        return self._thread.loop

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread (None when stopped)."""
        return self._thread.thread

    def attach(self, sink: Sink) -> int:
        """Register a client that is not one of the server's connections; returns its id.
        ``stop()`` closes it (1001) and forgets it: it has no connection to wait for."""
        client_id = int(self._thread.call(self._core.add_client, sink))
        self._attached.add(client_id)
        return client_id

    def detach(self, client_id: int) -> None:
        """Forget a client registered with ``attach`` (from any thread; does not wait)."""
        self._attached.discard(client_id)
        if self._thread.loop is not None:
            self._thread.call_soon_threadsafe(self._core.remove_client, client_id)

    # ---- publishing (any thread) -------------------------------------------

    def publish(self, obj: Any, channel: Hashable | None = None) -> None:
        """Serialize ``obj`` once (orjson) and queue it for ``channel``'s clients.

        ``None`` means every client; anything else, the empty string included, is a
        channel, with a backplane or without. A channel message must be an object
        without a ``seq`` key (the channel adds its own): a dict with one raises
        ``ValueError``, a list, string, number or None raises ``TypeError``."""
        if channel is not None:
            check_channel_object(obj)
        self._router.publish(obj, channel)

    def publish_json(self, data: bytes, channel: Hashable | None = None) -> None:
        """Queue already-serialized JSON bytes as they are, for ``channel``'s clients.

        For a channel they must be one JSON object, ``{`` to ``}`` (else ``TypeError``),
        with no top-level ``seq`` key: that is not checked (it would cost a parse), and
        would go out twice."""
        if channel is not None:
            check_channel_json(data)
        self._router.publish_json(data, channel)

    def send(self, client_id: int, obj: Any) -> None:
        """Queue ``obj`` for one client, on the same ordered path as ``publish``."""
        self._router.send(client_id, obj)

    def send_json(self, client_id: int, data: bytes) -> None:
        """Queue already-serialized JSON bytes for one client, as ``send`` does."""
        self._router.send_json(client_id, data)

    def publish_binary(self, data: bytes, channel: Hashable | None = None) -> None:
        """Queue ``data`` as one binary frame for ``channel``'s clients (None: all), in order
        with the JSON ones; it carries no ``seq`` and is not kept in history. Not available
        with a backplane: binary frames are not carried through Redis."""
        self._router.publish_binary(data, channel)

    def send_binary(self, client_id: int, data: bytes) -> None:
        """Queue ``data`` as one binary frame for one client, on the same ordered path."""
        self._router.send_binary(client_id, data)

    def encoding(self, client_id: int) -> int:
        """The wire protocol a client chose (loop thread; 0, MemGPT's, for one unknown)."""
        return int(self._core.encoding_of(client_id))

    def send_control(self, client_id: int, data: bytes) -> None:
        """Queue JSON for one client ahead of what the core holds for it while it lags
        (acks, errors): for frames that no channel message has to precede."""
        self._router.send_control(client_id, data)

    def publish_event(self, event: dict[str, Any], channel: Hashable) -> None:
        """Queue one agent event (``agentcast.streams.events``) for ``channel``: checked
        here (``BadEvent``), numbered and encoded once per wire protocol on the loop."""
        self._router.publish_event(check_event(event), check_channel(channel))

    def run(
        self,
        channel: Hashable,
        run_id: str | None = None,
        thread_id: str | None = None,
        *,
        rollup: float = 0.0,
        prompt: str | None = None,
    ) -> Run:
        """A run on ``channel``: ``with hub.run("agent-1") as run: ...`` (see
        ``agentcast.streams.producer``); ``rollup`` s: deltas that close together go as one;
        ``prompt``: the user's message it answers, in its ``run_start`` for every watcher."""
        return Run(
            self._router.publish_event, channel, run_id, thread_id, rollup, self._later, prompt
        )

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop thread in ``delay`` s (from any thread)."""
        loop = self._thread.loop
        if loop is None:
            raise RuntimeError("the Broadcaster is not running")
        self._thread.call_soon_threadsafe(loop.call_later, delay, callback)

    def subscribe(
        self,
        client_id: int,
        channel: Hashable,
        since: int | None = None,
        *,
        ack: bytes | None = None,
    ) -> None:
        """From now on (in queue order), ``client_id`` receives ``channel``'s messages.

        With ``since``, it first gets the kept messages with a larger seq, then the live
        ones, with no gap and no duplicate at the seam. If messages after ``since`` are
        no longer kept, it first gets ``{"type": "server_error", "code":
        "history_trimmed", "first_seq": F, ...}`` and then everything from ``F`` (or
        ``"channel_restarted"`` when ``since`` is past the channel's last seq: its
        numbering started again; see ``agentcast.notices``).

        ``ack`` (JSON bytes) is sent to the client once the subscription holds, before
        any replay. Beyond ``max_subscriptions`` nothing changes and the client gets a
        ``too_many_subscriptions`` notice instead of ``ack`` (this call cannot raise
        for it: the subscribe is applied later, on the loop thread).
        """
        self._router.subscribe(client_id, channel, since, ack)

    def unsubscribe(self, client_id: int, channel: Hashable) -> None:
        self._router.unsubscribe(client_id, channel)

    def after_pending(self, function: Callable[[], object]) -> None:
        """Call ``function`` on the loop thread once the subscribes and sends made before
        have taken effect. Without a backplane that is at once; with one, a subscribe to
        a channel new to this node waits a round trip to Redis, and what an agent
        publishes before it took effect would not reach that subscriber."""
        self._router.after_pending(function)

    # ---- identity (loop thread: in on_message, on_connect) -------------------

    @property
    def authenticating(self) -> bool:
        """Whether clients are authenticated at upgrade (``authenticate`` was given)."""
        return self._gate.authenticate is not None

    def identity(self, client_id: int) -> Identity | None:
        """The identity ``authenticate`` gave a connected client (None: anonymous, or no
        ``authenticate``). Loop thread only."""
        return None if self._sessions is None else self._sessions.identity(client_id)

    def refresh(self, client_id: int, token: str) -> Identity:
        """Verify ``token`` as the upgrade was (as a Bearer header) and make it the
        client's identity, moving its expiry. It must name the same ``sub`` with the same
        rights (reconnect to change them); raises ``Refused`` otherwise, and the old
        expiry stands. Loop thread only."""
        renewed = self._gate.refresh(self.identity(client_id), token)
        assert self._sessions is not None  # there is an identity: sessions keep them
        self._sessions.renew(client_id, renewed)
        return renewed

    def record_forbidden(self, client_id: int) -> bool:
        """Count a request refused by authorization; True the first time for this client
        (log it then, once per connection). Loop thread only."""
        return self._sessions is not None and self._sessions.forbid(client_id)

    def record_invalid_request(self, client_id: int) -> bool:
        """Count a client message answered with an error frame (not JSON, an unknown type,
        a bad field); True the first time for this client (log it then, once per
        connection). Loop thread only."""
        self._invalid_requests += 1
        return self._invalid_logged.first(client_id)

    # ---- introspection -----------------------------------------------------

    @property
    def client_count(self) -> int:
        return 0 if isinstance(self._core, _NotRunning) else int(self._core.client_count)

    def channel_info(self, channel: Hashable) -> dict[str, int] | None:
        """``last_seq``, ``first_seq`` (oldest kept), kept ``frames`` and ``bytes`` of a channel."""
        if isinstance(self._core, _NotRunning):
            return None
        info = self._core.channel_info(channel)
        return None if info is None else dict(info)

    def stats(self) -> dict[str, int]:
        """Counters: published, deliveries, bytes, writes, ... (docs/operations.md)."""
        if isinstance(self._core, _NotRunning):
            return {}
        auth = {} if self._sessions is None else self._sessions.stats()
        admitted = {} if self._admission is None else self._admission.stats()
        connections = {} if self._connections is None else self._connections.stats()
        sse = {} if self._sse is None else self._sse.stats()
        return {
            **self._core.stats(),
            **self._router.stats(),
            **self._gate.stats(),
            **auth,
            **admitted,
            **connections,
            **sse,
            "readyz_unready": self._unready_answers,
            "invalid_requests": self._invalid_requests,
        }

    def publish_latency(self) -> LatencyHistogram | None:
        """The core's publish-to-write latency histogram (1 publish in 64 sampled; see
        ``agentcast.serve.metrics``), or None when not running."""
        if isinstance(self._core, _NotRunning):
            return None
        latency: LatencyHistogram = self._core.publish_latency()
        return latency

    def closes(self) -> dict[tuple[str, str], int]:
        """How the server's connections ended so far: ``{(code, closed_by): count}`` by the
        code of the close frame that ended each (``"1006"`` when none; codes not named in
        ``agentcast._server.CLOSE_CODES`` as ``"other"``) and who sent it first
        (``"client"``, ``"server"``, ``"nobody"``); zeros left out."""
        return {} if self._connections is None else dict(self._connections.closes())
