# cython: language_level=3
"""The fan-out hub: serialize once, frame once, one write per client per tick.

Callers on any thread append to a C ring of operations and wake the loop at
most once per batch. On the loop thread, ``tick`` drains it, appends each frame once
per *subscriber group* (clients with the same channel set share a buffer),
then writes every group buffer to each member with one ``send`` per client.
A client that received a direct message in the tick gets a private copy of its
group's buffer from that point on, so per-client order always matches publish
order. Bytes the kernel does not take go to the sink's transport; a client
whose queued bytes exceed ``client_budget`` is closed with 1013.

A shared group is keyed by its frozen channel set, so moving a client costs
the size of that set; a client holding more than ``SHARED_MAX`` channels gets
a *solo* group of its own whose set is changed in place instead, so one
subscribe costs the same whether the client holds 20 channels or 10,000.
At most ``max_subscriptions`` per client: a subscribe beyond is refused,
counted, and answered with a ``too_many_subscriptions`` notice.

One publish in ``LATENCY_SAMPLE_EVERY`` carries the monotonic time it was queued at,
for the publish-to-write histogram (``_latency``); the others pay one counter decrement.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.pythread cimport PyThread_get_thread_ident
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

from agentcast._backlog cimport Backlog
from agentcast._frames cimport EventFrames, event_frame, sse_comment
from agentcast._buffer cimport (
    BINARY_FRAME,
    MAX_HEADER,
    TEXT_FRAME,
    Buffer,
    buf_append,
    buf_append_frame,
    buf_free,
    buf_reserve,
    buf_reset,
    framed,
    joined_frame,
    text_frame,
    write_header,
)
from agentcast._history cimport Channel, ChannelTable
from agentcast._latency cimport LATENCY_SAMPLE_EVERY, PublishLatency, monotonic_ns
from agentcast._slow cimport Skipping, SlowConsumerPolicy
from agentcast._opqueue cimport (
    OP_ACCEPT,
    OP_CONTROL,
    OP_DIRECT,
    OP_DIRECT_BINARY,
    OP_EVENT,
    OP_FORGET,
    OP_PUBLISH,
    OP_PUBLISH_BINARY,
    OP_RENUMBER,
    OP_RESUME,
    OP_SUBSCRIBE,
    OP_UNSUBSCRIBE,
    Op,
    ops_clear,
    ops_pop,
    ops_push,
    ops_shrink,
    release_ref,
)
from agentcast._sink cimport Sink

import logging

import orjson

from agentcast.notices import NOTICES
from agentcast.streams.events import DELTA_KINDS, STREAM_ID

cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_send "send"(int fd, const void* buf, size_t n, int flags)
    int MSG_DONTWAIT
    int MSG_NOSIGNAL

cdef extern from "<errno.h>" nogil:
    int EWOULDBLOCK

cdef extern from *:
    """
    #ifndef AGENTCAST_SOURCE_HASH
    #define AGENTCAST_SOURCE_HASH "unknown"
    #endif
    """
    const char* AGENTCAST_SOURCE_HASH

SOURCE_HASH = AGENTCAST_SOURCE_HASH.decode()

log = logging.getLogger("agentcast.core")

cdef enum:
    TICK_MEMORY_FACTOR = 16  # all of a tick's buffers together: at most this many batches
    SWEEP_BATCH_SIZE = 4096
    SHARED_MAX = 16          # channel sets larger than this live in solo groups

# A lagging client is looked at this often (s) while the loop has nothing else for it,
# and leaves lag mode once it has held nothing and its transport little for LAG_QUIET s.
LAG_POLL = 0.005
LAG_QUIET = 0.1

# Channels one core keeps at most: ~300 bytes each without history (Broadcaster's docstring).
MAX_CHANNELS = 100_000
# Bytes a client's transport may hold before what comes for it waits in its backlog, where
# deltas merge: past the kernel's own buffer (notsent_lowat None), a reader that slow. Merging
# earlier cost the other watchers more than it saved (bench/RESULTS.md, "The defaults of
# notsent_lowat and lag_threshold, again").
LAG_THRESHOLD = 64 * 1024
SWEEP_BATCH = SWEEP_BATCH_SIZE  # idle channels one sweep looks at, at most


cdef frozenset NO_CHANNELS = frozenset()


cdef void send_all(PendingWrite* writes, Py_ssize_t count) noexcept nogil:
    """One non-blocking send per client; may run with the GIL released."""
    cdef Py_ssize_t i
    cdef ssize_t sent
    cdef PendingWrite* w
    for i in range(count):
        w = &writes[i]
        while True:
            sent = c_send(w.fd, w.data, <size_t>w.size, MSG_DONTWAIT | MSG_NOSIGNAL)
            if sent >= 0 or errno != EINTR:
                break
        w.sent = sent
        w.error = errno if sent < 0 else 0


cdef inline unsigned long long latency_stamp(FanoutCore core) noexcept:
    """The time to stamp a publish with, one in ``LATENCY_SAMPLE_EVERY``; else 0 (a
    decrement: all an unsampled publish pays)."""
    core._sample_countdown -= 1
    if core._sample_countdown:
        return 0
    core._sample_countdown = LATENCY_SAMPLE_EVERY
    return monotonic_ns()


def build_frame(bytes payload not None) -> bytes:
    """The server frame the core writes for ``payload`` (exposed for tests and benchmarks)."""
    return text_frame(payload)


cdef inline int check_thread(FanoutCore core, str method) except -1:
    """Loop-only methods refuse other threads, as picows' ``WSTransport.send`` does: the
    core's state is unlocked, so a call from another thread would race the loop."""
    cdef unsigned long current = PyThread_get_thread_ident()
    if current != core._thread_id:
        raise RuntimeError(
            f"FanoutCore.{method} called from a wrong thread (core thread id="
            f"{core._thread_id}, current thread id={current}): call it on the loop thread, "
            "e.g. through loop.call_soon_threadsafe")
    return 0


cdef class Group:
    """Clients subscribed to exactly the same channels: they get the same bytes.

    A solo group holds one client with many channels in a mutable set.
    """

    def __cinit__(self, object channels, bint solo, int encoding, bint events_only):
        self.channels = channels
        self.solo = solo
        self.encoding = encoding
        self.events_only = events_only
        self.members = []
        self.channel_slots = {}

    def __dealloc__(self):
        buf_free(&self.buf)


cdef class Client:
    def __cinit__(self, long long client_id, Sink sink, int encoding, bint events_only,
                  bint sse):
        self.id = client_id
        self.sink = sink
        self.encoding = encoding
        self.events_only = events_only
        self.sse = sse
        self.live_from = {}

    def __dealloc__(self):
        buf_free(&self.priv)


cdef inline void join_group(Group group, Client client):
    client.group = group
    client.slot = len(group.members)
    group.members.append(client)


cdef inline void leave_group(Group group, Client client):
    """Swap-remove: O(1) whatever the group size."""
    cdef Client last = group.members.pop()
    if last is not client:
        group.members[client.slot] = last
        last.slot = client.slot


cdef inline int check_target(object channel) except -1:
    """A publish target: None (everyone) or a hashable channel. An unhashable one fails
    here, in the caller, not later in a tick."""
    if channel is not None:
        hash(channel)
    return 0


cdef inline int check_named(object channel) except -1:
    """A channel a call must name: not None, and hashable."""
    if channel is None:
        raise ValueError("channel must not be None")
    hash(channel)
    return 0


cdef class FanoutCore:
    """Registry, channels, batching and budgets. Loop-thread only, except the enqueue calls.

    ``publish``, ``publish_json``, ``publish_binary``, ``send``, ``send_json``,
    ``send_binary``, ``subscribe`` and ``unsubscribe`` may be called from any
    thread: each is an O(1) append to one ordered queue plus at most one
    pending wake-up of the loop; ``stats``,
    ``channel_info``, ``client_count`` and ``pending`` read from any thread.
    Everything else runs on the thread that created the core (its loop's) and
    raises RuntimeError when called from another.

    The notices the core sends (a resume's history gap, a backplane's gap or
    restart, a slow client's skipped messages) are built by ``notices``
    (``agentcast.notices.NOTICES`` by default): the core frames them, it does
    not speak the protocol.
    """

    def __init__(self, loop, *, wake=None, default=None,
                 Py_ssize_t client_budget=4 * 1024 * 1024,
                 Py_ssize_t max_batch_bytes=256 * 1024,
                 double flush_interval=0.0, bint release_gil=False,
                 Py_ssize_t history_size=1000, Py_ssize_t history_bytes=1024 * 1024,
                 str slow_consumer="close", notices=None, object max_subscriptions=128,
                 Py_ssize_t history_total_bytes=256 * 1024 * 1024,
                 object channel_ttl=300.0, Py_ssize_t max_channels=MAX_CHANNELS,
                 codec=None, Py_ssize_t lag_threshold=LAG_THRESHOLD):
        if max_batch_bytes <= 0:
            raise ValueError("max_batch_bytes must be positive")
        if flush_interval < 0:
            raise ValueError("flush_interval must be >= 0")
        if history_size < 0 or history_bytes < 0:
            raise ValueError("history_size and history_bytes must be >= 0")
        self.history_size = history_size
        self.history_bytes = history_bytes
        if max_subscriptions is None:
            self.max_subscriptions = PY_SSIZE_T_MAX
        elif max_subscriptions < 1:
            raise ValueError("max_subscriptions must be at least 1 (None: no limit)")
        else:
            self.max_subscriptions = max_subscriptions
        if history_total_bytes < 0:
            raise ValueError("history_total_bytes must be >= 0")
        self.history_total_bytes = history_total_bytes
        if channel_ttl is not None and not channel_ttl > 0:
            raise ValueError("channel_ttl must be positive (None: channels are never freed)")
        self.channel_ttl = float("inf") if channel_ttl is None else channel_ttl
        if max_channels < 1:
            raise ValueError("max_channels must be at least 1")
        self._sweeps = []
        self._queued_subscribes = {}
        self._table = ChannelTable(max_channels, history_size, history_bytes,
                                   self._queued_subscribes)
        self._loop = loop
        self._thread_id = PyThread_get_thread_ident()
        self._wake = wake if wake is not None else loop.call_soon_threadsafe
        self._tick_cb = self.tick
        self._dumps = orjson.dumps
        self._notices = NOTICES if notices is None else notices
        self._codec = codec
        if lag_threshold <= 0:
            raise ValueError("lag_threshold must be positive")
        self.lag_threshold = lag_threshold
        self._laggards = []
        self._slow = SlowConsumerPolicy(slow_consumer, client_budget, self._notices)
        self._default = default
        self.max_batch_bytes = max_batch_bytes
        self.flush_interval = flush_interval
        self.release_gil = release_gil
        self._next_id = 1
        self._sample_countdown = LATENCY_SAMPLE_EVERY
        self._latency = PublishLatency()
        self._clients = {}
        self._groups = {}
        self._channel_groups = {}
        self._group_list = []
        self._filled_groups = []
        self._diverged = []
        self._write_clients = []

    def __dealloc__(self):
        free(self._writes)
        ops_clear(&self._ops)

    # ---- any thread ---------------------------------------------------------

    cdef int _enqueue(self, int kind, long long client_id, object target, object payload,
                      unsigned long long since=0) except -1:
        ops_push(&self._ops, kind, client_id, target, payload, since)
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake(self._tick_cb)
            except BaseException:
                self._wake_pending = False  # not pending: the next call asks again
                raise
            self.n_wakeups += 1
        return 0

    cpdef publish(self, object obj, object channel=None):
        """Serialize ``obj`` once and queue it for every client of ``channel`` (None: all)."""
        cdef bytes payload
        check_target(channel)
        if self._default is None:
            payload = self._dumps(obj)
        else:
            payload = self._dumps(obj, default=self._default)
        self._enqueue(OP_PUBLISH, 0, channel, payload, latency_stamp(self))

    cpdef publish_json(self, bytes payload, object channel=None):
        """Queue already-serialized JSON as is, for every client of ``channel``."""
        if payload is None:
            raise TypeError("payload must be bytes, not None")
        check_target(channel)
        self._enqueue(OP_PUBLISH, 0, channel, payload, latency_stamp(self))

    cpdef send(self, long long client_id, object obj):
        """Serialize ``obj`` and queue it for one client, in order with publishes."""
        cdef bytes payload
        if self._default is None:
            payload = self._dumps(obj)
        else:
            payload = self._dumps(obj, default=self._default)
        self._enqueue(OP_DIRECT, client_id, None, payload)

    cpdef send_json(self, long long client_id, bytes payload):
        if payload is None:
            raise TypeError("payload must be bytes, not None")
        self._enqueue(OP_DIRECT, client_id, None, payload)

    cpdef publish_binary(self, bytes data, object channel=None):
        """Queue ``data`` as one binary frame for every client of ``channel`` (None: all).

        In order with the JSON messages, but a binary frame carries no ``seq``
        (that is a JSON field) and is not kept in the channel's history: a
        resume replays JSON only. It counts in ``published``, ``deliveries``
        and ``bytes`` like any frame.
        """
        if data is None:
            raise TypeError("data must be bytes, not None")
        check_target(channel)
        self._enqueue(OP_PUBLISH_BINARY, 0, channel, data, latency_stamp(self))

    cpdef send_binary(self, long long client_id, bytes data):
        """Queue ``data`` as one binary frame for one client, in order with everything else."""
        if data is None:
            raise TypeError("data must be bytes, not None")
        self._enqueue(OP_DIRECT_BINARY, client_id, None, data)

    cpdef publish_event(self, dict event, object channel):
        """Queue an agent event for ``channel`` (checked by the caller: see
        ``agentcast.streams.events``): numbered, kept and encoded once per encoding among
        its subscribers when applied."""
        check_named(channel)
        if self._codec is None:
            raise RuntimeError("this core was made without an event codec")
        self._enqueue(OP_EVENT, 0, channel, event, latency_stamp(self))

    cpdef send_control(self, long long client_id, bytes payload):
        """Queue JSON for one client that overtakes what a lagging client has held in the
        core (acks, errors): for frames no channel message must precede."""
        if payload is None:
            raise TypeError("payload must be bytes, not None")
        self._enqueue(OP_CONTROL, client_id, None, payload)

    cpdef subscribe(self, long long client_id, object channel, object since=None,
                    bytes ack=None):
        """Subscribe; with ``since``, first replay the channel's kept messages after that seq.

        ``ack`` (JSON) is sent to the client when the subscription takes effect, before
        the replay. A client already holding ``max_subscriptions`` channels is refused:
        it gets a ``too_many_subscriptions`` notice instead (counted as
        ``refused_subscriptions``), and what it holds is unchanged.
        """
        check_named(channel)
        if since is not None and since < 0:
            raise ValueError("since must be >= 0")
        # Counted until applied (see subscriber_count). C calls only between the read and
        # the write (str, int, tuple channels): under the GIL as atomic as the push itself.
        self._queued_subscribes[channel] = self._queued_subscribes.get(channel, 0) + 1
        if since is None:
            self._enqueue(OP_SUBSCRIBE, client_id, channel, ack)
        else:
            self._enqueue(OP_RESUME, client_id, channel, ack, <unsigned long long>since)

    cpdef accept(self, object channel, list frames):
        """Queue frames numbered elsewhere (a backplane): ``[(seq, payload), ...]`` in seq order,
        each payload's JSON already carrying its ``"seq"``.

        In queue order each is kept in the channel's history and sent to its
        subscribers. A seq already seen is dropped (counted as ``duplicates``).
        The first frame a channel ever gets sets where it starts; after that a
        jump in seq sends the subscribers a ``history_gap`` notice first.
        """
        cdef object seq, payload
        check_named(channel)
        for seq, payload in frames:
            if type(payload) is not bytes or seq < 1:
                raise ValueError(f"frames must be (seq >= 1, bytes) pairs, not ({seq!r}, ...)")
        self._enqueue(OP_ACCEPT, 0, channel, frames)

    cpdef renumber(self, object channel):
        """Queue: the channel's numbering starts again (its backplane lost it): its history
        is forgotten, the next frame ``accept`` gets sets where it starts, and its
        subscribers get a ``channel_restarted`` notice."""
        check_named(channel)
        self._enqueue(OP_RENUMBER, 0, channel, None)

    cpdef forget(self, object channel):
        """Queue: free the channel's seq and history, unless a client holds it or has a
        subscribe to it queued (its backplane stopped following it; the broker keeps its
        numbering, and the next frames accepted start it anew). Nothing was lost: no
        notice, no gap; counted as ``freed_channels`` like an idle channel."""
        check_named(channel)
        self._enqueue(OP_FORGET, 0, channel, None)

    def subscriber_count(self, object channel):
        """Clients subscribed to ``channel``, counting subscribes still queued (loop thread):
        a channel with one on its way is not idle."""
        cdef Group group
        cdef Py_ssize_t count
        check_thread(self, "subscriber_count")
        count = self._queued_subscribes.get(channel, 0)
        for group in self._channel_groups.get(channel, ()):
            count += len(group.members)
        return count

    cpdef unsubscribe(self, long long client_id, object channel):
        check_named(channel)
        self._enqueue(OP_UNSUBSCRIBE, client_id, channel, None)

    @property
    def client_count(self):
        return len(self._clients)

    @property
    def pending(self):
        """Queued operations not yet taken by a tick."""
        return self._ops.count

    def stats(self):
        """Counters since creation; readable from any thread (values may be a tick old)."""
        return {
            "clients": len(self._clients),
            "groups": len(self._group_list),
            "published": self.n_published,
            "deliveries": self.n_deliveries,
            "bytes": self.n_bytes,
            "writes": self.n_writes,
            "queued_writes": self.n_queued_writes,
            "ticks": self.n_ticks,
            "wakeups": self.n_wakeups,
            "dropped_clients": self._slow.dropped_clients,
            "unknown_targets": self.n_unknown_targets,
            "write_errors": self.n_write_errors,
            "pending": self._ops.count,
            "channels": len(self._table),
            "skip_episodes": self._slow.skip_episodes,
            "skipped_frames": self._slow.skipped_frames,
            "duplicates": self.n_duplicates,
            "gaps": self.n_gaps,
            "failed_ops": self.n_failed_ops,
            "refused_subscriptions": self.n_refused_subscriptions,
            "history_bytes": self._table.bytes,
            "freed_channels": self._table.freed,
            "evicted_channels": self._table.evicted,
            "refused_channels": self._table.refused,
            "history_trims": self.n_history_trims,
            "subscriptions": self.n_subscriptions,
            "history_gaps_served": self.n_history_gaps_served,
            "events": self.n_events,
            "merged_deltas": self.n_merged_deltas,
            "lag_episodes": self.n_lag_episodes,
            "lagging_clients": len(self._laggards),
            "snapshots": self.n_snapshots,
        }

    @property
    def max_channels(self):
        return self._table.max_channels

    @property
    def client_budget(self):
        """Unsent bytes a client may hold (the slow-consumer policy's budget)."""
        return self._slow.budget

    @client_budget.setter
    def client_budget(self, Py_ssize_t budget):
        if budget <= 0:
            raise ValueError("client_budget must be positive")
        self._slow.budget = budget

    @property
    def skip_slow(self):
        return self._slow.skip

    def channel_info(self, object channel):
        """seq and history of one channel, or None if there is no such channel (nothing was
        published or subscribed to it, or it was freed)."""
        return self._table.info(channel)

    # ---- loop thread --------------------------------------------------------

    def sweep_idle(self, double now, Py_ssize_t limit=SWEEP_BATCH_SIZE):
        """Free the channels that have had no subscriber, no message and no (un)subscribe
        for ``channel_ttl`` seconds (``now``: the loop's clock; a timer calls this every so
        often, never per message). Their seq and history go: a resume gets a
        ``history_gap`` and the channel's numbering starts again at 1. At most ``limit``
        are looked at, least recently used first (the work of one call is bounded: call
        again soon when it returns ``limit``). Returns how many were freed."""
        cdef double horizon = now - self.channel_ttl
        cdef list sweeps = self._sweeps
        cdef Py_ssize_t i = 0
        cdef unsigned long long cutoff
        check_thread(self, "sweep_idle")
        sweeps.append((now, self.n_ticks))
        while i + 1 < len(sweeps) and sweeps[i + 1][0] <= horizon:
            i += 1
        if sweeps[i][0] > horizon:
            return 0
        cutoff = sweeps[i][1]  # every tick up to this one ran before the horizon
        del sweeps[:i]
        return self._table.sweep(cutoff, limit)

    cpdef long long add_client(self, Sink sink, int encoding=MEMGPT_ENCODING) except -1:
        """Register a connected sink; it receives broadcasts until it subscribes. Agent
        events reach it in ``encoding`` (an index of ``agentcast.streams.encodings``)."""
        cdef Client client
        check_thread(self, "add_client")
        if encoding < 0 or encoding != MEMGPT_ENCODING and (
                self._codec is None or encoding >= len(self._codec.sse)):
            raise ValueError(f"no encoding {encoding} (an event codec's encoding id)")
        client = Client(self._next_id, sink, encoding, self._events_only(encoding),
                        self._codec is not None and self._codec.sse[encoding])
        self._next_id += 1
        self._clients[client.id] = client
        join_group(self._group_for(NO_CHANNELS, encoding), client)
        return client.id

    cpdef remove_client(self, long long client_id):
        cdef Client client
        cdef Group group
        check_thread(self, "remove_client")
        client = self._clients.pop(client_id, None)
        if client is None:
            return
        client.closed = True
        group = client.group
        self.n_subscriptions -= len(group.channels)
        leave_group(group, client)
        if not group.members:
            self._drop_group(group)

    @property
    def codec(self):
        """The event codec (loop thread: its open runs change as events are applied)."""
        return self._codec

    def encoding_of(self, long long client_id):
        """The encoding a client was registered with (loop thread); MemGPT's if unknown."""
        cdef Client client
        check_thread(self, "encoding_of")
        client = self._clients.get(client_id)
        return MEMGPT_ENCODING if client is None else client.encoding

    def client_ids(self):
        """Connected clients' ids (loop thread)."""
        check_thread(self, "client_ids")
        return list(self._clients)

    cpdef close_client(self, long long client_id, int code, str reason):
        """Stop writing to one client and close it with ``code`` after what it already has."""
        cdef Client client
        check_thread(self, "close_client")
        client = self._clients.get(client_id)
        if client is not None and not client.closed:
            client.closed = True
            client.sink.close(code, reason)

    cpdef bint admit_control(self, long long client_id, Py_ssize_t size) except -1:
        """May the listener write a control frame of ``size`` bytes (a pong) to this client?
        Such frames count against its budget like the core's own: one that would take it
        over gets the slow-consumer policy (closed with 1013, or skipping) and is not sent."""
        cdef Client client
        cdef Py_ssize_t queued
        check_thread(self, "admit_control")
        client = self._clients.get(client_id)
        if client is None or client.closed or client.sink.closing():
            return False
        queued = client.sink.queued() + size
        if self._slow.over(queued):
            self._drop_slow(client, queued)
            return False
        return True

    def close_all(self, int code, str reason):
        """Close every client after what is queued for it; abort those over budget now
        (a shutdown does not wait for clients that were not keeping up anyway)."""
        cdef Client client
        check_thread(self, "close_all")
        for client in self._laggards:  # what they hold goes first, if they can take it
            if client.backlog is not None and not client.closed and not self._slow.over(
                    client.sink.queued() + client.backlog.nbytes):
                self._catch_up(client)
        for client in list(self._clients.values()):
            if client.closed:
                continue
            client.closed = True
            try:
                if client.sink.closing():
                    continue
                if self._slow.over(client.sink.queued()) or client.skipping is not None:
                    client.sink.abort()
                else:
                    client.sink.close(code, reason)
            except Exception:  # one broken sink does not keep the others open
                self._sink_failed(client)

    def abort_all(self):
        """Drop every connection at once (shutdown deadline passed)."""
        cdef Client client
        check_thread(self, "abort_all")
        for client in list(self._clients.values()):
            client.closed = True
            client.sink.abort()

    def flush(self):
        """Drain the whole queue now, ignoring pacing (used on shutdown)."""
        cdef double interval
        check_thread(self, "flush")
        interval = self.flush_interval
        self.flush_interval = 0.0
        try:
            while self._ops.count:
                self.tick()
        finally:
            self.flush_interval = interval

    cpdef tick(self):
        """Drain up to ``max_batch_bytes`` of queued operations and write them out."""
        cdef double now
        check_thread(self, "tick")
        self._wake_pending = False
        if self.flush_interval > 0.0:
            now = self._loop.time()
            if now < self._next_flush:
                self._wake_pending = True
                self._loop.call_at(self._next_flush, self._tick_cb)
                return
            self._next_flush = now + self.flush_interval
        self.n_ticks += 1
        try:
            while True:
                try:
                    self._apply_batch()
                    break
                except Exception:
                    # One bad operation costs itself only: what the tick applied before
                    # and after it is still written out in this round.
                    self.n_failed_ops += 1
                    log.exception("a queued operation failed; skipped")
            self._write_round()
        finally:
            self._end_tick()
            if self._ops.count:
                if not self._wake_pending:  # even after an error: nothing is stranded
                    self._wake_pending = True
                    self._loop.call_soon(self._tick_cb)
            else:
                ops_shrink(&self._ops)

    cdef int _apply_batch(self) except -1:
        """Apply queued operations until the queue is empty or this tick's batch is full."""
        cdef Op op
        while (self._ops.count and self._tick_peak < self.max_batch_bytes
               and self._tick_bytes < self.max_batch_bytes * TICK_MEMORY_FACTOR):
            ops_pop(&self._ops, &op)
            self._apply(&op)
        return 0

    cdef int _apply(self, Op* op) except -1:
        """Carry out one popped operation; its references are released even if it fails."""
        cdef object target = <object>op.target
        cdef object payload = <object>op.payload
        cdef Py_ssize_t fanned = self._tick_bytes  # grows if a publish reaches a buffer
        release_ref(op.target)  # the locals hold them now
        release_ref(op.payload)
        if op.kind == OP_PUBLISH:
            self._route(target, payload)
            if op.since and self._tick_bytes != fanned:
                self._latency.keep(op.since)
        elif op.kind == OP_EVENT:
            self._route_event(target, payload)
            if op.since and self._tick_bytes != fanned:
                self._latency.keep(op.since)
        elif op.kind == OP_DIRECT:
            self._route_ordered(op.client_id, payload, TEXT_FRAME)
        elif op.kind == OP_CONTROL:
            self._route_direct(op.client_id, payload, TEXT_FRAME)
        elif op.kind == OP_PUBLISH_BINARY:
            self._route_binary(target, payload)
            if op.since and self._tick_bytes != fanned:
                self._latency.keep(op.since)
        elif op.kind == OP_DIRECT_BINARY:
            self._route_ordered(op.client_id, payload, BINARY_FRAME)
        elif op.kind == OP_RESUME:
            self._unqueue_subscribe(target)
            self._resume(op.client_id, target, op.since, payload)
        elif op.kind == OP_SUBSCRIBE:
            self._unqueue_subscribe(target)
            self._subscribe(op.client_id, target, payload)
        elif op.kind == OP_UNSUBSCRIBE:
            self._change_subscription(op.client_id, target, False)
        elif op.kind == OP_ACCEPT:
            self._accept(target, payload)
        elif op.kind == OP_RENUMBER:
            self._renumber(target)
        elif op.kind == OP_FORGET:
            self._forget(target)
        return 0

    def publish_latency(self):
        """The publish-to-write histogram: (bucket upper bounds in s, without +Inf; counts
        per bucket, not cumulative, +Inf last; sum in s; count). Any thread."""
        return self._latency.histogram()

    cdef int _unqueue_subscribe(self, object channel) except -1:
        cdef Py_ssize_t queued = self._queued_subscribes.get(channel, 0)
        if queued > 1:
            self._queued_subscribes[channel] = queued - 1
        else:
            self._queued_subscribes.pop(channel, None)
        return 0

    # ---- routing ------------------------------------------------------------

    cdef Group _group_for(self, frozenset channels, int encoding):
        """The shared group of exactly ``channels`` (at most ``SHARED_MAX`` of them) in
        ``encoding``."""
        cdef tuple key = (channels, encoding)
        cdef Group group = self._groups.get(key)
        if group is None:
            group = Group(channels, False, encoding, self._events_only(encoding))
            self._groups[key] = group
            self._add_group(group)
        return group

    cdef int _add_group(self, Group group) except -1:
        group.slot = len(self._group_list)
        self._group_list.append(group)
        for channel in group.channels:
            self._link(channel, group)
        return 0

    cdef int _drop_group(self, Group group) except -1:
        cdef Group last
        if not group.solo:
            del self._groups[(group.channels, group.encoding)]
        last = self._group_list.pop()
        if last is not group:
            self._group_list[group.slot] = last
            last.slot = group.slot
        for channel in group.channels:
            self._unlink(channel, group)
        return 0

    cdef int _link(self, object channel, Group group) except -1:
        """Add ``group`` to ``channel``'s group list (lists, not sets: ``_fan`` walks them)."""
        cdef list groups = self._channel_groups.get(channel)
        if groups is None:
            groups = self._channel_groups[channel] = []
            self._table.set_busy(channel, True, self.n_ticks)
        group.channel_slots[channel] = len(groups)
        groups.append(group)
        return 0

    cdef int _unlink(self, object channel, Group group) except -1:
        """Swap-remove ``group`` from ``channel``'s group list: O(1) whatever its length."""
        cdef list groups = self._channel_groups[channel]
        cdef Py_ssize_t slot = group.channel_slots.pop(channel)
        cdef Group last = groups.pop()
        if last is not group:
            groups[slot] = last
            last.channel_slots[channel] = slot
        if not groups:
            del self._channel_groups[channel]
            self._table.set_busy(channel, False, self.n_ticks)  # its idle time starts
        return 0

    cdef int _subscribe(self, long long client_id, object channel, bytes ack) except -1:
        """Subscribe; the ack first, then (an event encoding's client) the channel's open run
        as it stands, so what follows is valid from its first frame."""
        cdef Client client
        if not self._change_subscription(client_id, channel, True):
            return 0
        if ack is not None:
            self._route_direct(client_id, ack, TEXT_FRAME)
        client = self._clients[client_id]
        if client.encoding != MEMGPT_ENCODING:
            self._send_snapshot(client, channel, 0)
        return 0

    cdef int _change_subscription(self, long long client_id, object channel,
                                  bint add) except -1:
        """Add or remove one channel of a client's; 1 if the change holds, 0 if the client
        is unknown or the subscribe was refused (beyond ``max_subscriptions``)."""
        cdef Client client = self._clients.get(client_id)
        cdef object channels
        cdef Py_ssize_t count
        if client is None:
            self.n_unknown_targets += 1
            return 0
        channels = client.group.channels
        if add == (channel in channels):
            return 1
        count = len(channels) + (1 if add else -1)
        if count > self.max_subscriptions:
            return self._refuse_subscription(client_id, channel)
        if add and self._open_channel(channel) is None:
            return self._refuse_channel(client_id, channel)
        if client.group.solo and count > SHARED_MAX:
            self._change_solo(client, channel, add)  # O(1), whatever the client holds
        elif count > SHARED_MAX:  # the one subscribe too many for a shared group
            self._move(client, Group(set(channels) | {channel}, True, client.encoding,
                                     client.events_only))
        elif add:
            self._move(client, self._group_for(frozenset(channels) | {channel}, client.encoding))
        else:
            self._move(client, self._group_for(frozenset(channels) - {channel}, client.encoding))
        self.n_subscriptions += 1 if add else -1
        if add:
            client.live_from[channel] = self._next_seq(channel)
            if client.skipping is not None:  # skipping: what comes now is skipped too
                client.skipping.from_seq[channel] = client.live_from[channel]
        else:
            del client.live_from[channel]
            if client.skipping is not None:
                client.skipping.from_seq.pop(channel, None)
        return 1

    cdef int _refuse_subscription(self, long long client_id, object channel) except -1:
        self.n_refused_subscriptions += 1
        if self.n_refused_subscriptions == 1:
            log.warning("client %d: subscribe beyond max_subscriptions (%d) refused; more are "
                        "only counted (refused_subscriptions)", client_id, self.max_subscriptions)
        self._route_direct(client_id, self._notices.too_many_subscriptions(
            channel, self.max_subscriptions), TEXT_FRAME)
        return 0

    cdef int _refuse_channel(self, long long client_id, object channel) except -1:
        """A subscribe to a new channel while ``max_channels`` are all busy (counted by the
        table as ``refused_channels``)."""
        self._route_direct(client_id, self._notices.too_many_channels(
            channel, self._table.max_channels), TEXT_FRAME)
        return 0

    cdef int _change_solo(self, Client client, object channel, bint add) except -1:
        """A solo group's set changes in place: its buffer is its one client's bytes."""
        cdef Group group = client.group
        if add:
            (<set>group.channels).add(channel)
            self._link(channel, group)
        else:
            (<set>group.channels).discard(channel)
            self._unlink(channel, group)
        return 0

    cdef unsigned long long _next_seq(self, object channel) except 0:
        cdef Channel state = self._table.get(channel)
        return 1 if state is None else state.last_seq + 1

    cdef Channel _open_channel(self, object name):
        """The channel ``name``, made if new; None if it is new and all ``max_channels``
        are busy (the first such refusal is logged, all are counted)."""
        cdef Channel state = self._table.open(name, self.n_ticks)
        if state is None and self._table.refused == 1:
            log.warning("channel %r refused: all max_channels (%d) have subscribers; more "
                        "are only counted (refused_channels)", name, self._table.max_channels)
        return state

    cdef int _trim_history(self) except -1:
        """Over ``history_total_bytes``: forget the oldest history of the least recently
        used channels, down to 7/8 of it."""
        self.n_history_trims += 1
        return self._table.trim_history(
            self.history_total_bytes - self.history_total_bytes // 8)

    cdef int _resume(self, long long client_id, object name, unsigned long long since,
                     bytes ack) except -1:
        """Subscribe, then replay what came after ``since`` that the client does not hold:
        at this point of the queue, so the replay and the live messages meet with no gap
        and no duplicate, also when it was subscribed already (a resubscribe after a
        ``skipped`` notice gets exactly the skipped seqs)."""
        cdef Client client = self._clients.get(client_id)
        cdef Channel state
        cdef unsigned long long held_from, asked
        cdef object frame
        if client is None or client.closed:
            self.n_unknown_targets += 1
            return 0
        if not self._change_subscription(client_id, name, True):
            return 0
        if ack is not None:
            self._route_direct(client_id, ack, TEXT_FRAME)
        state = self._table.get(name)  # subscribed: it has one
        if since > state.last_seq:  # ahead of this channel: its numbering started again
            since = self._history_gap(client_id, name, state, since)
        held_from = client.live_from[name]
        if since + 1 >= held_from:
            return 0  # it holds everything after ``since`` already
        if since + 1 < state.first_seq:
            asked = since
            since = self._history_gap(client_id, name, state, since)
            if client.encoding != MEMGPT_ENCODING and self._send_snapshot(client, name, asked):
                client.live_from[name] = asked + 1
                return 0  # the open run as it stands replaces the part of it not kept
        for frame in state.frames_after(since, held_from - 1):
            if type(frame) is EventFrames:  # an event: its frame in the client's encoding
                frame = (<EventFrames>frame).get(client.encoding)
                if frame is None:
                    continue
            elif client.events_only:  # a plain frame: not for this client's encoding
                continue
            self._append_private(client, frame)
        client.live_from[name] = since + 1
        if client.skipping is not None:  # skipping: the replay is skipped too
            client.skipping.from_seq[name] = min(client.skipping.from_seq[name], since + 1)
        return 0

    cdef unsigned long long _history_gap(self, long long client_id, object name, Channel state,
                                         unsigned long long since) except? 0:
        """Tell the client that what it asked for after ``since`` is not kept; the replay
        then starts at the oldest kept seq (the returned ``since``)."""
        self.n_history_gaps_served += 1
        self._route_direct(client_id, self._notices.history_gap(
            name, since, state.first_seq, state.last_seq), TEXT_FRAME)
        return state.first_seq - 1

    cdef int _append_private(self, Client client, bytes frame) except -1:
        if client.skipping is not None:  # skipping: the replay is skipped too
            self._count_skipped(client, 1)
            return 0
        if client.backlog is not None:  # lagging: after what it holds
            return client.backlog.add_frame(None, frame)
        if not client.diverged:
            self._diverge(client)
        buf_append(&client.priv, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
        client.priv_frames += 1
        self._count_tick_bytes(PyBytes_GET_SIZE(frame), client.priv.size)
        return 0

    cdef int _move(self, Client client, Group group) except -1:
        """Move a client to ``group`` (a new solo one is registered here); mid-tick it keeps
        its bytes so far privately."""
        cdef Group old = client.group
        if self._tick_bytes and not client.diverged:
            self._diverge(client)
        leave_group(old, client)
        if not old.members:
            self._drop_group(old)
        if group.solo:
            self._add_group(group)
        join_group(group, client)
        return 0

    cdef int _diverge(self, Client client) except -1:
        """Give the client a private copy of its group's bytes so far this tick; a skipping
        client's private buffer holds only the frames addressed to it (never skipped), its
        group's frames count as skipped."""
        cdef Buffer* shared = &client.group.buf
        client.priv.size = 0
        client.diverged = True
        self._diverged.append(client)
        if client.backlog is not None:  # the group's frames went to its backlog
            client.priv_frames = 0
            return 0
        if client.skipping is not None:
            client.priv_frames = 0
            return self._count_skipped(client, client.group.frames)
        buf_reserve(&client.priv, shared.size)
        if shared.size:
            memcpy(client.priv.data, shared.data, shared.size)
        client.priv.size = shared.size
        client.priv_frames = client.group.frames
        return 0

    cdef int _count_skipped(self, Client client, Py_ssize_t frames) except -1:
        return self._slow.count_skipped(client.skipping, frames)

    cdef int _route(self, object channel, bytes payload) except -1:
        cdef unsigned char header[MAX_HEADER]
        cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
        cdef const char* data = PyBytes_AS_STRING(payload)
        cdef Py_ssize_t hl
        cdef bytes frame
        cdef Channel state
        self.n_published += 1
        if channel is None:
            hl = write_header(header, size, TEXT_FRAME)
            return self._fan(channel, header, hl, data, size)
        # Stamped once (seq + history); every group gets the same frame bytes.
        state = self._table.get(channel)
        if state is None:
            state = self._open_channel(channel)
            if state is None:  # new, and every channel is busy: it has no subscriber either
                return 0
        frame = state.stamp(payload, self.n_ticks)
        if self._table.bytes > self.history_total_bytes:
            self._trim_history()
        return self._fan(channel, header, 0, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))

    cdef int _route_binary(self, object channel, bytes data) except -1:
        """A binary frame: the same path as a broadcast, even on a channel (no seq, no history)."""
        cdef unsigned char header[MAX_HEADER]
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t hl = write_header(header, size, BINARY_FRAME)
        self.n_published += 1
        return self._fan(channel, header, hl, PyBytes_AS_STRING(data), size)

    cdef int _route_event(self, object channel, dict event) except -1:
        cdef Channel state = self._table.get(channel)
        if state is None:
            state = self._open_channel(channel)
            if state is None:  # new, and every channel is busy: it has no subscriber either
                return 0
            self._codec.forget(channel)  # numbered from 1 again: an old run's state is void
        return self._deliver_event(channel, state, state.last_seq + 1, event)

    cdef int _deliver_event(self, object channel, Channel state, unsigned long long seq,
                            dict event) except -1:
        """Number, fan out (encoded once per encoding its clients speak, whatever their
        number) and keep one event; ``seq`` is ``state.last_seq + 1``."""
        cdef object item, run
        item, run = self._codec.on_event(channel, event, seq)
        cdef EventFrames frames = EventFrames(self._codec, channel, event, seq, item, run,
                                              len(self._codec.sse))
        self.n_published += 1
        self.n_events += 1
        self._fan_event(channel, frames, event, seq)
        frames.count_kept()
        state.keep(seq, frames, self.n_ticks)
        if self._table.bytes > self.history_total_bytes:
            self._trim_history()
        return 0

    cdef int _fan_event(self, object channel, EventFrames frames, dict event,
                        unsigned long long seq) except -1:
        """Append an event's frame in each group's encoding to that group (and to each
        diverged client); an encoding with no frame for it sends nothing."""
        cdef Group group
        cdef Client client
        cdef object frame
        cdef list groups = self._channel_groups.get(channel)
        if groups is None:
            return 0
        for group in groups:
            frame = frames.get(group.encoding)
            if frame is None:
                continue
            if not group.buf.size:
                self._filled_groups.append(group)
            buf_append(&group.buf, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
            group.frames += 1
            self._count_tick_bytes(PyBytes_GET_SIZE(frame), group.buf.size)
        for client in self._diverged:
            if client.backlog is None and channel in client.group.channels:
                frame = frames.get(client.encoding)
                if frame is None:
                    continue
                if client.skipping is not None:
                    self._count_skipped(client, 1)
                    continue
                buf_append(&client.priv, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
                client.priv_frames += 1
                self._count_tick_bytes(PyBytes_GET_SIZE(frame), client.priv.size)
        if self._laggards:
            self._hold(channel, frames, event, seq)
        return 0

    cdef int _hold(self, object channel, object frames, dict event,
                   unsigned long long seq) except -1:
        """Give a frame (bytes, or an event's ``EventFrames``) to every lagging client of
        ``channel`` (None: all) through its backlog, where deltas merge; one whose backlog
        and transport together pass its budget gets the slow-consumer policy. Clients of an
        events-only encoding get no plain frame."""
        cdef Client client
        cdef object frame
        cdef str kind = None if event is None else event.get("type")
        cdef bint delta = kind in DELTA_KINDS
        for client in self._laggards:
            if (client.closed or client.backlog is None
                    or channel is not None and channel not in client.group.channels):
                continue
            if event is None:
                if client.events_only:
                    continue
                frame = frames
            else:
                frame = (<EventFrames>frames).get(client.encoding)
            if frame is None:
                continue
            if delta:
                if client.backlog.add_delta(channel, <EventFrames>frames, event[STREAM_ID[kind]],
                                            event["delta"], frame, seq):
                    self.n_merged_deltas += 1
            else:
                client.backlog.add_frame(channel, frame)
            if self._slow.over(client.backlog.nbytes + client.sink.queued()):
                self._catch_up(client)  # what it holds goes out; the policy takes over
                if not client.closed:
                    self._check_budget(client)
        return 0

    cdef int _send_snapshot(self, Client client, object channel,
                            unsigned long long since) except -1:
        """Send the client the channel's open run (what it holds after ``since``); 1 if
        there was one, 0 if not, or if its state was not kept whole (a ``history_trimmed``
        notice says so)."""
        cdef object snapshot = self._codec.snapshot(channel, since)
        cdef Channel state
        if snapshot is None:
            state = self._table.get(channel)
            self.n_history_gaps_served += 1
            self._route_direct(client.id, self._notices.history_gap(
                channel, since, state.last_seq + 1, state.last_seq), TEXT_FRAME)
            return 0
        if not snapshot:
            return 0
        self.n_snapshots += 1
        for event, seq, from_seq, item, run in snapshot:
            frame = event_frame(self._codec, client.encoding, channel, event, seq, from_seq,
                                item, run)
            if frame is not None:
                self._append_private(client, frame)
        return 1

    cdef bint _events_only(self, int encoding) except -1:
        return self._codec is not None and self._codec.events_only[encoding]

    cdef int _start_lagging(self, Client client) except -1:
        """The client's transport holds more than ``lag_threshold``: from now on what comes
        for it waits in a backlog (where deltas merge) until its transport drains."""
        client.backlog = Backlog()
        self._laggards.append(client)
        self.n_lag_episodes += 1
        if self._lag_timer is None:
            self._lag_timer = self._loop.call_later(LAG_POLL, self.serve_laggards)
        return 0

    def serve_laggards(self):
        """Lagging clients whose transport drained get their backlog, even when nothing new
        is published (loop thread; a timer calls it every ``LAG_POLL`` s while any lag)."""
        check_thread(self, "serve_laggards")
        self._lag_timer = None
        self._serve_laggards()
        if self._laggards and self._lag_timer is None:
            self._lag_timer = self._loop.call_later(LAG_POLL, self.serve_laggards)

    cdef int _serve_laggards(self) except -1:
        """Each lagging client whose transport is down to half ``lag_threshold`` gets its
        backlog (merged) in one write. It is served with its group again once its backlog
        stayed empty and its transport that low for ``LAG_QUIET`` s: a reader that is
        still slow keeps merging, instead of taking a delta a frame until it lags again."""
        cdef Client client
        cdef list still = []
        cdef Py_ssize_t low = self.lag_threshold // 2
        cdef double now = self._loop.time()
        for client in self._laggards:
            if client.backlog is None:  # the slow-consumer policy took it over
                continue
            if client.closed or client.sink.closing():
                client.backlog = None
                continue
            try:
                if client.sink.queued() > low:
                    client.backlog.quiet_since = 0.0
                elif client.backlog.entries:
                    self._catch_up(client)
                    client.backlog.quiet_since = 0.0
                elif client.backlog.quiet_since == 0.0:
                    client.backlog.quiet_since = now
            except Exception:
                self._sink_failed(client)
            if client.closed:
                client.backlog = None
            elif client.backlog.quiet_since and now - client.backlog.quiet_since >= LAG_QUIET:
                client.backlog = None
            else:
                still.append(client)
        self._laggards = still
        return 0

    cdef int _catch_up(self, Client client) except -1:
        """Write the client's backlog (its merges encoded once) to its transport."""
        cdef Buffer out
        cdef Py_ssize_t frames
        if not client.backlog.entries:
            return 0
        out.data = NULL
        out.size = out.capacity = 0
        try:
            frames = client.backlog.drain(&out, self._codec, client.encoding)
            self.n_bytes += out.size
            self.n_deliveries += frames
            self.n_queued_writes += 1
            client.sink.write(out.data, out.size)
        finally:
            buf_free(&out)
        return 0

    cdef int _fan(self, object channel, const unsigned char* header, Py_ssize_t hl,
                  const char* data, Py_ssize_t size) except -1:
        """Append one frame (``header`` + ``data``) to every group and diverged client of
        ``channel`` (None: everyone)."""
        cdef Group group
        cdef Client client
        cdef list groups
        groups = self._group_list if channel is None else self._channel_groups.get(channel)
        if groups is None:
            return 0
        for group in groups:
            if group.events_only:
                continue
            if not group.buf.size:  # its first bytes this tick: the write round visits it
                self._filled_groups.append(group)
            buf_append_frame(&group.buf, header, hl, data, size)
            group.frames += 1
            self._count_tick_bytes(hl + size, group.buf.size)
        for client in self._diverged:
            if client.backlog is None and not client.events_only and (
                    channel is None or channel in client.group.channels):
                if client.skipping is not None:
                    self._count_skipped(client, 1)
                    continue
                buf_append_frame(&client.priv, header, hl, data, size)
                client.priv_frames += 1
                self._count_tick_bytes(hl + size, client.priv.size)
        if self._laggards:
            self._hold(channel, joined_frame(header, hl, data, size), None, 0)
        return 0

    cdef inline void _count_tick_bytes(self, Py_ssize_t added, Py_ssize_t buffer_size) noexcept:
        """A tick stops draining when one client's bytes reach ``max_batch_bytes`` (a
        broadcast: after that many bytes of messages; 100 channels: after about 100 times
        as many, so each send still carries as much) or all buffers together reach
        ``TICK_MEMORY_FACTOR`` times it."""
        self._tick_bytes += added
        if buffer_size > self._tick_peak:
            self._tick_peak = buffer_size

    cdef int _accept(self, object channel, list frames) except -1:
        cdef Channel state = self._open_channel(channel)
        cdef unsigned long long seq
        cdef bytes payload, frame
        cdef object event
        if state is None:  # new, and every channel is busy: no subscriber here
            return 0
        for seq, payload in frames:
            if state.last_seq == 0:  # new or renumbered: it starts where the backplane is
                state.restart(seq - 1)
            elif seq <= state.last_seq:
                self.n_duplicates += 1
                continue
            elif seq != state.last_seq + 1:
                self._announce_gap(channel, state, seq)
            event = None if self._codec is None else self._codec.decode(payload)
            if event is not None:
                if seq == 1:  # a numbering from 1: an old run's state is void
                    self._codec.forget(channel)
                self._deliver_event(channel, state, seq, event)
                continue
            frame = text_frame(payload)
            state.keep(seq, frame, self.n_ticks)
            if self._table.bytes > self.history_total_bytes:
                self._trim_history()
            self.n_published += 1
            self._fan(channel, NULL, 0, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
        return 0

    cdef int _announce_gap(self, object channel, Channel state, unsigned long long seq) except -1:
        """Tell ``channel``'s subscribers that seqs before ``seq`` will never come."""
        cdef bytes frame = text_frame(
            self._notices.backplane_gap(channel, state.last_seq + 1, seq - 1))
        self.n_gaps += 1
        log.warning("channel %r: seqs %d..%d lost", channel, state.last_seq + 1, seq - 1)
        state.restart(seq - 1)
        return self._fan(channel, NULL, 0, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))

    cdef int _renumber(self, object channel) except -1:
        cdef Channel state = self._table.get(channel)
        cdef bytes frame
        cdef Group group
        cdef Client client
        if state is None:  # no history, no subscriber: nothing to forget, nobody to tell
            return 0
        frame = text_frame(self._notices.restarted(channel, state.last_seq))
        self.n_gaps += 1
        state.restart(0)  # the next frame accepted starts it anew: no false gap before it
        if self._codec is not None:  # its open runs were numbered in the old count
            self._codec.forget(channel)
        for group in self._channel_groups.get(channel, ()):
            for client in group.members:  # what they hold is numbered from 1 again
                client.live_from[channel] = 1
                if client.skipping is not None:
                    client.skipping.from_seq[channel] = 1
        return self._fan(channel, NULL, 0, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))

    cdef int _forget(self, object channel) except -1:
        """Free an idle channel as a sweep does: nobody holds it, no subscribe on its way."""
        cdef Channel state = self._table.get(channel)
        if state is None or not state.idle or channel in self._queued_subscribes:
            return 0
        self._table.forget(state)
        self._table.freed += 1
        return 0

    cdef int _route_ordered(self, long long client_id, bytes payload,
                            unsigned char first) except -1:
        """A direct frame after everything queued for the client before it (a step's end
        after the step's messages), also when it lags."""
        cdef Client client = self._clients.get(client_id)
        if client is None or client.backlog is None or client.closed:
            return self._route_direct(client_id, payload, first)
        if client.sse:
            if first == TEXT_FRAME:
                client.backlog.add_frame(None, sse_comment(payload))
            return 0
        return client.backlog.add_frame(None, framed(payload, first))

    cdef int _route_direct(self, long long client_id, bytes payload,
                           unsigned char first) except -1:
        cdef unsigned char header[MAX_HEADER]
        cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
        cdef Py_ssize_t hl = write_header(header, size, first)
        cdef Client client = self._clients.get(client_id)
        if client is None or client.closed:
            self.n_unknown_targets += 1
            return 0
        if client.sse:  # an ack, a notice: a comment its parser skips; no binary over SSE
            if first == TEXT_FRAME:
                self._append_private(client, sse_comment(payload))
            return 0
        if not client.diverged:
            self._diverge(client)
        buf_append_frame(&client.priv, header, hl, PyBytes_AS_STRING(payload), size)
        client.priv_frames += 1
        self._count_tick_bytes(hl + size, client.priv.size)
        return 0

    # ---- writing ------------------------------------------------------------

    def _reserve_writes(self, Py_ssize_t count):
        cdef PendingWrite* writes
        if count <= self._writes_cap:
            return
        writes = <PendingWrite*>realloc(self._writes, count * sizeof(PendingWrite))
        if writes == NULL:
            raise MemoryError()
        self._writes = writes
        self._writes_cap = count

    cdef int _write_round(self) except -1:
        """One send per client holding bytes; leftovers are queued on the sink."""
        cdef Group group
        cdef Client client
        cdef Py_ssize_t count = 0, i
        cdef list targets = self._write_clients
        if not self._tick_bytes:
            return 0
        if self._latency.n_samples:  # once a round, not per client (the first write is µs on)
            self._latency.observe()
        self._reserve_writes(len(self._clients))
        for group in self._filled_groups:
            self._round_bytes = None
            for client in group.members:
                if client.diverged or client.closed or client.backlog is not None:
                    continue
                try:
                    count = self._stage(client, &group.buf, group.frames, count, targets)
                except Exception:
                    self._sink_failed(client)
        for client in self._diverged:
            if not client.closed and client.priv.size:
                self._round_bytes = None
                try:
                    count = self._stage(client, &client.priv, client.priv_frames, count, targets)
                except Exception:
                    self._sink_failed(client)
        self._round_bytes = None
        if self.release_gil:
            with nogil:
                send_all(self._writes, count)
        else:
            send_all(self._writes, count)
        try:
            for i in range(count):
                client = <Client>targets[i]
                try:
                    self._finish_write(client, &self._writes[i])
                except Exception:
                    self._sink_failed(client)
        finally:
            del targets[:]
        if self._laggards:
            self._serve_laggards()
        return 0

    cdef int _sink_failed(self, Client client) except -1:
        """A sink raised: drop that client, never the round (the others still get their bytes)."""
        log.exception("client %d: its sink failed; dropping it", client.id)
        self.n_write_errors += 1
        client.closed = True
        try:
            client.sink.abort()
        except Exception:
            log.exception("client %d: abort failed too", client.id)
        return 0

    cdef Py_ssize_t _stage(self, Client client, Buffer* buf, Py_ssize_t frames,
                           Py_ssize_t count, list targets) except -1:
        """Stage a direct send, or queue on the sink when the transport already holds bytes."""
        cdef Sink sink = client.sink
        cdef PendingWrite* w
        if sink.closing():
            # Its fd may be closed, even reused by a new connection.
            client.closed = True
            return count
        if client.skipping is not None:
            if self._slow.behind(sink):
                if not client.diverged:  # channel frames only: skipped
                    self._count_skipped(client, frames)
                    return count
                # Only the frames addressed to it: sent, unless they alone overflow the budget.
                if self._slow.direct_overflows(client.skipping, buf.size):
                    self._close_slow(client, sink.queued() + buf.size)
                    return count
            else:
                self._end_skip(client)
                if sink.closing():
                    client.closed = True
                    return count
        self.n_bytes += buf.size
        self.n_deliveries += frames
        if sink.fd < 0 or sink.queued():
            self._queue_round_on_sink(client, buf)
            return count
        w = &self._writes[count]
        w.fd = sink.fd
        w.data = buf.data
        w.size = buf.size
        targets.append(client)
        return count + 1

    cdef int _finish_write(self, Client client, PendingWrite* w) except -1:
        cdef Py_ssize_t sent
        self.n_writes += 1
        if w.sent == w.size:
            return 0
        if w.sent < 0 and w.error != EAGAIN and w.error != EWOULDBLOCK:
            # The peer is gone (reset, broken pipe); the transport reports it.
            self.n_write_errors += 1
            client.closed = True
            client.sink.abort()
            return 0
        sent = w.sent if w.sent > 0 else 0
        self._queue_on_sink(client, w.data + sent, w.size - sent)
        return 0

    cdef int _queue_on_sink(self, Client client, const char* data, Py_ssize_t size) except -1:
        self.n_queued_writes += 1
        client.sink.write(data, size)
        return self._check_budget(client)

    cdef int _queue_round_on_sink(self, Client client, Buffer* buf) except -1:
        """Queue all of ``buf``: one bytes object per buffer and round, shared by every sink
        that queues it (TLS transports, clients with a backlog), not a copy per client."""
        if self._round_bytes is None:
            self._round_bytes = PyBytes_FromStringAndSize(buf.data, buf.size)
        self.n_queued_writes += 1
        client.sink.write_bytes(self._round_bytes)
        return self._check_budget(client)

    cdef int _check_budget(self, Client client) except -1:
        cdef Py_ssize_t queued = client.sink.queued()
        if self._slow.over(queued) and not client.sink.closing():
            self._drop_slow(client, queued)
        elif (queued > self.lag_threshold and client.backlog is None
              and client.encoding != MEMGPT_ENCODING and client.skipping is None
              and not client.closed):
            self._start_lagging(client)
        return 0

    cdef int _drop_slow(self, Client client, Py_ssize_t queued) except -1:
        """Over budget: closed with 1013, or skipping until it drains ("skip")."""
        cdef Skipping skipping
        if client.backlog is not None:  # no longer lagging: the policy decides what it gets
            self._catch_up(client)  # what it held is sent (or closed on) like the rest
            client.backlog = None
        if not self._slow.skip:
            return self._close_slow(client, queued)
        if client.skipping is None:
            skipping = self._slow.start_skipping(client.id, queued)
            for name in client.group.channels:
                skipping.from_seq[name] = self._next_seq(name)
            client.skipping = skipping
        return 0

    cdef int _close_slow(self, Client client, Py_ssize_t queued) except -1:
        client.closed = True
        return self._slow.close(client.id, client.sink, queued)

    cdef int _end_skip(self, Client client) except -1:
        """The client drained: tell it what it missed (then it is served live again). A
        diverged client missed this tick's channel frames too (its buffer holds only its
        direct frames); one that was not gets its group's, live."""
        cdef bytes frame = self._slow.end_skipping(
            client.skipping, self._table, self.n_ticks, client.diverged, client.live_from)
        client.skipping = None
        return client.sink.write(PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))

    cdef int _end_tick(self) except -1:
        cdef Group group
        cdef Client client
        for group in self._filled_groups:
            buf_reset(&group.buf)
            group.frames = 0
        del self._filled_groups[:]
        for client in self._diverged:
            buf_reset(&client.priv)
            client.priv_frames = 0
            client.diverged = False
        del self._diverged[:]
        self._tick_bytes = self._tick_peak = 0
        self._latency.n_samples = 0
        return 0
