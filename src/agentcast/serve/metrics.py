"""Prometheus metrics, read from a ``Broadcaster`` at scrape time (no hot-path cost)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = [
    "COUNTERS",
    "DROP_REASONS",
    "GAUGES",
    "REFUSED_UPGRADES",
    "LatencyHistogram",
    "MetricsSource",
    "StatsCollector",
    "registry_for",
]

# stats() key -> (metric name without agentcast_ / _total, help). Keys a server does not
# have (no backplane, no authentication) are left out of the scrape.
GAUGES: dict[str, tuple[str, str]] = {
    "clients": ("clients", "Connected WebSocket clients."),
    "groups": ("groups", "Client groups of the core (clients with the same subscriptions)."),
    "channels": ("channels", "Channels with history or subscribers."),
    "subscriptions": ("subscriptions", "Client-to-channel subscriptions."),
    "pending": ("pending_ops", "Operations queued for the core's loop thread."),
    "history_bytes": ("history_bytes", "Bytes held in channel histories."),
    "connections": ("connections", "Open TCP connections counted by admission."),
    "connection_ips": ("connection_ips", "Peer addresses with open connections."),
    "backplane_pending": ("backplane_pending", "Publishes queued for Redis."),
    "backplane_channels": ("backplane_channels", "Channels the node follows in Redis."),
}
COUNTERS: dict[str, tuple[str, str]] = {
    "published": ("published", "Messages published (broadcasts and channel messages)."),
    "deliveries": ("deliveries", "Messages queued to clients (one per client per message)."),
    "bytes": ("sent_bytes", "Bytes written to client sockets."),
    "writes": ("write_calls", "Socket write calls."),
    "queued_writes": ("queued_writes", "Writes left (partly) to the transport's buffer."),
    "ticks": ("ticks", "Flushes of the core."),
    "wakeups": ("wakeups", "Loop wake-ups requested by publishers."),
    "unknown_targets": ("unknown_targets", "Sends to a client id that was not connected."),
    "write_errors": ("write_errors", "Socket writes that failed."),
    "skip_episodes": ("skip_episodes", "Times a slow client started skipping frames."),
    "skipped_frames": ("skipped_frames", "Frames skipped for slow clients."),
    "duplicates": ("duplicate_frames", "Frames from the backplane already numbered here."),
    "gaps": ("seq_gaps", "Gaps and restarts announced in a channel's numbering."),
    "history_gaps_served": (
        "history_gaps_served",
        "Resumes answered with history_trimmed or channel_restarted: not all is kept.",
    ),
    "failed_ops": ("failed_ops", "Queued operations that raised on the loop thread."),
    "refused_subscriptions": ("refused_subscriptions", "Subscriptions over the client limit."),
    "freed_channels": ("freed_channels", "Idle channels freed."),
    "evicted_channels": ("evicted_channels", "Idle channels evicted for a new one (max_channels)."),
    "refused_channels": ("refused_channels", "New channels refused: max_channels all watched."),
    "history_trims": ("history_trims", "Frames trimmed to keep histories within bounds."),
    "tokens_expired": ("tokens_expired", "Clients closed because their token expired."),
    "refresh_refused": ("refreshes_refused", "Token refreshes refused (answered unauthorized)."),
    "jwks_refetches": ("jwks_refetches", "JWKS fetches started by a token's unknown kid."),
    "readyz_unready": ("readyz_unready", "GET /readyz answered 503 (not ready)."),
    "client_protocol_errors": (
        "client_protocol_errors",
        "Connections failed for their client's frames (malformed, not UTF-8, too big).",
    ),
    "forbidden": ("forbidden_requests", "Requests refused by authorization."),
    "invalid_requests": (
        "invalid_requests",
        "Client messages answered with an error frame (not JSON, unknown type, bad field).",
    ),
    "backplane_acked": ("backplane_acked", "Publishes Redis acknowledged."),
    "backplane_dropped": ("backplane_dropped", "Publishes dropped (the Redis queue was full)."),
    "backplane_failed": ("backplane_failed", "Publishes Redis refused or lost."),
    "backplane_sends_dropped": ("backplane_sends_dropped", "Local operations dropped."),
    "backplane_publish_retries": ("backplane_publish_retries", "Publisher reconnects to Redis."),
    "backplane_reconnects": ("backplane_reconnects", "Pub/sub reconnects to Redis."),
    "backplane_resyncs": ("backplane_resyncs", "Channels caught up from the Redis stream."),
    "backplane_broadcast_gaps": ("backplane_broadcast_gaps", "Broadcasts missed while away."),
    "backplane_bad_messages": ("backplane_bad_messages", "Unreadable messages from Redis."),
    "backplane_task_restarts": ("backplane_task_restarts", "Backplane tasks restarted."),
}
# stats() key -> reason label of agentcast_dropped_clients_total.
DROP_REASONS: dict[str, str] = {
    "dropped_clients": "slow",
    "dropped_clients_rate": "rate",
    "dropped_clients_size": "size",
    "dropped_clients_auth": "auth",
    "dropped_clients_protocol": "protocol",
}
# stats() key -> reason label of agentcast_upgrades_refused_total.
REFUSED_UPGRADES: dict[str, str] = {
    "origin_refused": "origin",
    "auth_refused": "auth",
    "host_refused": "host",
    "connections_refused_per_ip": "per_ip",
    "connections_refused_rate": "rate",
    "upgrades_refused_max_clients": "max_clients",
    "upgrades_refused_handshake": "handshake",
    "upgrades_refused_head_size": "head_size",
}


# (bucket upper bounds in s without +Inf, counts per bucket with +Inf last, sum in s, count)
LatencyHistogram = tuple[tuple[float, ...], list[int], float, int]


class MetricsSource(Protocol):
    """What the metrics are read from (a ``Broadcaster``)."""

    def stats(self) -> dict[str, int]: ...
    def closes(self) -> dict[tuple[str, str], int]: ...
    def publish_latency(self) -> LatencyHistogram | None: ...


class StatsCollector(Collector):
    """Turns one read of the source per scrape into metric families."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        stats = self._source.stats()
        for key, (name, documentation) in GAUGES.items():
            if key in stats:
                yield GaugeMetricFamily(f"agentcast_{name}", documentation, value=stats[key])
        for key, (name, documentation) in COUNTERS.items():
            if key in stats:
                yield CounterMetricFamily(f"agentcast_{name}", documentation, value=stats[key])
        yield from _by_label(
            stats,
            "agentcast_upgrades_refused",
            "Refused WebSocket upgrades by reason.",
            REFUSED_UPGRADES,
        )
        yield from _by_label(
            stats,
            "agentcast_dropped_clients",
            "Clients the server closed, by reason: slow (over its byte budget, 1013), rate"
            " (message rate, 1008), size (message too big, 1009), auth (token expired, 3005),"
            " protocol (malformed frames, 1002/1003/1007).",
            DROP_REASONS,
        )
        closes = CounterMetricFamily(
            "agentcast_closes",
            "Ended WebSocket connections by the code of the close frame that ended each,"
            " sent or received (whichever came first; closed_by says who sent it), 1006 when"
            " there was none; codes not listed are counted as other.",
            labels=["code", "closed_by"],
        )
        for (code, closed_by), count in sorted(self._source.closes().items()):
            closes.add_metric([code, closed_by], count)
        yield closes
        latency = self._source.publish_latency()
        if latency is not None:
            yield _latency_histogram(latency)


def _by_label(
    stats: dict[str, int], name: str, documentation: str, reasons: dict[str, str]
) -> Iterator[Metric]:
    """One counter labelled ``reason``, a series per ``stats()`` key the server has."""
    family = CounterMetricFamily(name, documentation, labels=["reason"])
    for key, reason in reasons.items():
        if key in stats:
            family.add_metric([reason], stats[key])
    if family.samples:
        yield family


def _latency_histogram(latency: LatencyHistogram) -> HistogramMetricFamily:
    bounds, counts, total, _ = latency
    upper = [*(repr(bound) for bound in bounds), "+Inf"]
    buckets = [(le, float(n)) for le, n in zip(upper, accumulate(counts), strict=True)]
    return HistogramMetricFamily(
        "agentcast_publish_to_write_seconds",
        "Time from publish() (in the caller's thread) to the start of the write round of the"
        " loop's tick that sends its frame, sampled: 1 publish in 64 (publish, publish_json,"
        " publish_binary; not with a backplane); frames that reached no client are left out.",
        buckets=buckets,
        sum_value=total,
    )


def registry_for(source: MetricsSource) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) with one server's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(source))
    return registry
