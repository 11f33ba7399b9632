# cython: language_level=3
"""C contract of the fan-out hub: clients, subscriber groups, the write round and the core."""

from agentcast._backlog cimport Backlog
from agentcast._buffer cimport Buffer
from agentcast._frames cimport EventFrames
from agentcast._history cimport Channel, ChannelTable
from agentcast._latency cimport PublishLatency
from agentcast._slow cimport Skipping, SlowConsumerPolicy
from agentcast._opqueue cimport Op, OpQueue
from agentcast._sink cimport Sink


cdef struct PendingWrite:
    int fd
    const char* data
    Py_ssize_t size
    Py_ssize_t sent      # bytes the kernel took, -1 on error
    int error            # errno when sent == -1


cdef enum:
    MEMGPT_ENCODING = 0                    # agent events as MemGPT's whole messages

cdef class Group:
    cdef readonly object channels          # frozenset (shared) or set (solo)
    cdef readonly bint solo                # one client's own, changed in place
    cdef readonly int encoding             # how its members get agent events
    cdef readonly bint events_only         # its members get no plain (non-event) frame
    cdef list members
    cdef Py_ssize_t slot                   # index in the core's group list
    cdef dict channel_slots                # channel -> index in that channel's group list
    cdef Buffer buf
    cdef Py_ssize_t frames


cdef class Client:
    cdef readonly long long id
    cdef readonly Sink sink
    cdef Group group
    cdef Py_ssize_t slot
    cdef Buffer priv
    cdef Py_ssize_t priv_frames
    cdef bint diverged
    cdef readonly bint closed
    cdef Skipping skipping                     # over budget in "skip" mode, until it drains
    cdef readonly int encoding
    cdef bint events_only                      # gets no plain (non-event) frame
    cdef readonly bint sse                     # its frames are SSE events and comments
    cdef Backlog backlog                       # lagging: what it is not sent yet, else None
    # channel -> first seq of the unbroken run of that channel's frames it holds up to now
    cdef dict live_from


cdef class FanoutCore:
    cdef:
        object _loop
        unsigned long _thread_id                  # the loop-only methods' thread
        object _wake
        object _tick_cb
        OpQueue _ops
        object _dumps
        object _default
        object _notices                           # builds the notices; the core frames them
        object _codec                             # agent events: state, encodings, snapshots
        list _laggards                            # clients with a backlog
        object _lag_timer
        public Py_ssize_t lag_threshold           # queued bytes that make a client lag
        bint _wake_pending
        double _next_flush
        public double flush_interval
        public Py_ssize_t max_batch_bytes
        public bint release_gil
        SlowConsumerPolicy _slow
        readonly Py_ssize_t history_size
        readonly Py_ssize_t history_bytes
        readonly Py_ssize_t max_subscriptions
        readonly Py_ssize_t history_total_bytes
        readonly double channel_ttl               # inf: never freed
        ChannelTable _table
        list _sweeps                              # (time, n_ticks) of recent sweeps
        dict _queued_subscribes                   # channel -> subscribes queued, not applied
        long long _next_id
        dict _clients
        dict _groups                              # frozenset -> its shared Group
        dict _channel_groups                      # channel -> [Group], swap-removed
        list _group_list                          # every Group, shared and solo
        list _filled_groups                       # the Groups given bytes this tick
        list _diverged
        Py_ssize_t _tick_bytes                    # appended to all buffers this tick
        Py_ssize_t _tick_peak                     # the largest buffer this tick
        PendingWrite* _writes
        Py_ssize_t _writes_cap
        list _write_clients
        bytes _round_bytes   # the buffer being staged, as bytes for the sinks that queue it
        # counters
        unsigned long long n_published
        unsigned long long n_deliveries
        unsigned long long n_bytes
        unsigned long long n_writes
        unsigned long long n_queued_writes
        unsigned long long n_ticks
        unsigned long long n_wakeups
        unsigned long long n_unknown_targets
        unsigned long long n_write_errors
        unsigned long long n_duplicates
        unsigned long long n_gaps
        unsigned long long n_failed_ops           # operations that raised when applied
        unsigned long long n_refused_subscriptions  # beyond max_subscriptions
        unsigned long long n_history_trims        # passes over history_total_bytes
        unsigned long long n_history_gaps_served  # resumes told part of what they asked is gone
        unsigned long long n_events               # agent events applied
        unsigned long long n_merged_deltas        # deltas sent inside another's frame
        unsigned long long n_lag_episodes         # times a client started lagging
        unsigned long long n_snapshots            # open-run snapshots sent to joiners
        Py_ssize_t n_subscriptions                # client -> channel subscriptions now
        unsigned int _sample_countdown            # publishes until the next latency stamp
        PublishLatency _latency

    cpdef publish(self, object obj, object channel=*)
    cpdef publish_json(self, bytes payload, object channel=*)
    cpdef send(self, long long client_id, object obj)
    cpdef send_json(self, long long client_id, bytes payload)
    cpdef publish_binary(self, bytes data, object channel=*)
    cpdef send_binary(self, long long client_id, bytes data)
    cpdef publish_event(self, dict event, object channel)
    cpdef send_control(self, long long client_id, bytes payload)
    cpdef subscribe(self, long long client_id, object channel, object since=*, bytes ack=*)
    cpdef unsubscribe(self, long long client_id, object channel)
    cpdef accept(self, object channel, list frames)
    cpdef renumber(self, object channel)
    cpdef forget(self, object channel)
    cpdef long long add_client(self, Sink sink, int encoding=*) except -1
    cpdef remove_client(self, long long client_id)
    cpdef close_client(self, long long client_id, int code, str reason)
    cpdef bint admit_control(self, long long client_id, Py_ssize_t size) except -1
    cpdef tick(self)

    cdef int _enqueue(self, int kind, long long client_id, object target, object payload,
                      unsigned long long since=*) except -1
    cdef int _apply_batch(self) except -1
    cdef int _apply(self, Op* op) except -1
    cdef int _unqueue_subscribe(self, object channel) except -1
    cdef Group _group_for(self, frozenset channels, int encoding)
    cdef int _add_group(self, Group group) except -1
    cdef int _drop_group(self, Group group) except -1
    cdef int _link(self, object channel, Group group) except -1
    cdef int _unlink(self, object channel, Group group) except -1
    cdef int _change_subscription(self, long long client_id, object channel,
                                  bint add) except -1
    cdef int _subscribe(self, long long client_id, object channel, bytes ack) except -1
    cdef int _refuse_subscription(self, long long client_id, object channel) except -1
    cdef int _change_solo(self, Client client, object channel, bint add) except -1
    cdef Channel _open_channel(self, object name)
    cdef int _refuse_channel(self, long long client_id, object channel) except -1
    cdef int _trim_history(self) except -1
    cdef int _resume(self, long long client_id, object name, unsigned long long since,
                     bytes ack) except -1
    cdef unsigned long long _history_gap(self, long long client_id, object name, Channel state,
                                         unsigned long long since) except? 0
    cdef unsigned long long _next_seq(self, object channel) except 0
    cdef int _append_private(self, Client client, bytes frame) except -1
    cdef int _move(self, Client client, Group group) except -1
    cdef int _diverge(self, Client client) except -1
    cdef int _route(self, object channel, bytes payload) except -1
    cdef int _route_event(self, object channel, dict event) except -1
    cdef int _deliver_event(self, object channel, Channel state, unsigned long long seq,
                            dict event) except -1
    cdef int _fan_event(self, object channel, EventFrames frames, dict event,
                        unsigned long long seq) except -1
    cdef int _hold(self, object channel, object frames, dict event,
                   unsigned long long seq) except -1
    cdef int _send_snapshot(self, Client client, object channel,
                            unsigned long long since) except -1
    cdef bint _events_only(self, int encoding) except -1
    cdef int _start_lagging(self, Client client) except -1
    cdef int _serve_laggards(self) except -1
    cdef int _catch_up(self, Client client) except -1
    cdef int _fan(self, object channel, const unsigned char* header, Py_ssize_t hl,
                  const char* data, Py_ssize_t size) except -1
    cdef int _accept(self, object channel, list frames) except -1
    cdef int _announce_gap(self, object channel, Channel state, unsigned long long seq) except -1
    cdef int _renumber(self, object channel) except -1
    cdef int _forget(self, object channel) except -1
    cdef int _route_binary(self, object channel, bytes data) except -1
    cdef int _route_direct(self, long long client_id, bytes payload,
                           unsigned char first) except -1
    cdef int _route_ordered(self, long long client_id, bytes payload,
                            unsigned char first) except -1
    cdef void _count_tick_bytes(self, Py_ssize_t added, Py_ssize_t buffer_size) noexcept
    cdef int _write_round(self) except -1
    cdef Py_ssize_t _stage(self, Client client, Buffer* buf, Py_ssize_t frames,
                           Py_ssize_t count, list targets) except -1
    cdef int _finish_write(self, Client client, PendingWrite* w) except -1
    cdef int _queue_on_sink(self, Client client, const char* data, Py_ssize_t size) except -1
    cdef int _queue_round_on_sink(self, Client client, Buffer* buf) except -1
    cdef int _check_budget(self, Client client) except -1
    cdef int _drop_slow(self, Client client, Py_ssize_t queued) except -1
    cdef int _close_slow(self, Client client, Py_ssize_t queued) except -1
    cdef int _count_skipped(self, Client client, Py_ssize_t frames) except -1
    cdef int _end_skip(self, Client client) except -1
    cdef int _sink_failed(self, Client client) except -1
    cdef int _end_tick(self) except -1
