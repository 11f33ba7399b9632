"""The servers under comparison, behind one small interface: start, publish, client_count, stop,
and for many agents route and publish_to (each client watches one agent).

Each peer serves on 127.0.0.1 with pings off (the raw receivers never answer
them, and a ping frame would be counted as a message) from a thread of the
process that creates it, and is published to from another thread of that
process, the way an agent would use it. Peer modules are imported only when
asked for, so an optional library (socketify) that is missing costs nothing
until its peer is chosen.
"""

from __future__ import annotations

import importlib
import re
import ssl
from collections.abc import Sequence
from typing import Any, Protocol, cast

HOST = "127.0.0.1"

# name -> (module under agentcast.bench.peers, class)
_REGISTRY = {
    "agentcast": ("agentcast", "AgentcastPeer"),
    "memgpt": ("memgpt", "MemgptPeer"),
    "websockets": ("websockets", "WebsocketsPeer"),
    "picows": ("picows", "PicowsPeer"),
    "pyfanout": ("pyfanout", "PyfanoutPeer"),
    "socketify": ("socketify", "SocketifyPeer"),
}
NAMES = tuple(_REGISTRY)

# 1: serve wss:// with a throwaway certificate the receivers trust (``tls_identity``)
_TLS: dict[str, type] = {"tls": int}
# Settings a server spec may carry ("agentcast:flush_interval=0.02"): agentcast's own knobs,
# so that a run can set two configurations of it side by side, TLS for every peer that
# can serve it (socketify takes certificates only as files), and MemGPT's pause.
SETTINGS: dict[str, dict[str, type]] = {
    "memgpt": {
        **_TLS,
        "end_pause": float,  # seconds before agent_response_end (MemGPT's server: 1)
    },
    "websockets": _TLS,
    "picows": _TLS,
    "pyfanout": _TLS,
    "agentcast": {
        "flush_interval": float,
        "max_batch_bytes": int,
        "release_gil": int,
        "transport": str,  # "uvloop" (agentcast's default) or "aiofastnet" (picows')
        "backplane": str,  # a Redis URL: every message goes round Redis
        "workers": int,  # > 1: that many processes on one port, joined by the backplane
        "channels": int,  # > 0: clients spread over that many agent channels (seq, history)
        **_TLS,
        "scrape": int,  # 1: GET /metrics on the server's port once a second, as Prometheus
        "lag_threshold": int,  # bytes a transport holds before its client lags (deltas merge)
        "notsent_lowat": int,  # TCP_NOTSENT_LOWAT of the connections (0: the kernel's own)
    },
}
# A ':' that starts a setting ("name=value", or a bare "name" meaning name=1), not one
# inside a URL.
_SETTING = re.compile(r":(?=[a-z_]+(?:=|:|$))")


class Peer(Protocol):
    """A server under test, as its publisher thread sees it."""

    def start(self) -> int:
        """Start serving on 127.0.0.1; return the bound port."""

    def publish(self, obj: Any) -> None:
        """Send ``obj`` as JSON to every connected client; called from a non-loop thread."""

    def route(self, watched: Sequence[str]) -> None:
        """From now on the k-th client to connect watches agent ``watched[k]`` only (see
        ``_agents.Watchers``); called before those clients connect."""

    def publish_to(self, agent: str, obj: Any) -> None:
        """Send ``obj`` as JSON to the clients watching ``agent``; from a non-loop thread."""

    @property
    def client_count(self) -> int: ...

    def stop(self) -> None: ...


class PeerUnavailable(Exception):
    """The peer's library cannot be imported here: it is skipped, not failed."""


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"agentcast:flush_interval=0.02"`` -> ``("agentcast", {"flush_interval": 0.02})``;
    a bare setting is 1: ``"agentcast:tls"`` -> ``("agentcast", {"tls": 1})``.

    Raises ValueError naming what is wrong: an unknown server, or a setting
    that server does not take, or a value of the wrong type.
    """
    name, *assignments = _SETTING.split(spec)
    if name not in _REGISTRY:
        raise ValueError(f"unknown server {name!r}; choose from {','.join(NAMES)}")
    allowed = SETTINGS.get(name, {})
    settings: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        text = text if equals else "1"
        if key not in allowed:
            takes = ", ".join(allowed) or "no settings"
            raise ValueError(f"{name} does not take {key!r} (it takes {takes})")
        try:
            settings[key] = allowed[key](text)
        except ValueError:
            kind = allowed[key].__name__
            raise ValueError(f"{name}: {key} must be {kind}, not {text!r}") from None
    if settings.get("workers", 1) > 1 and "backplane" not in settings:
        raise ValueError(f"{name}: workers > 1 needs backplane=redis://...")
    if settings.get("workers", 1) > 1 and settings.get("tls"):
        raise ValueError(f"{name}: tls is not benchmarked with workers > 1")
    if settings.get("scrape") and (settings.get("tls") or settings.get("workers", 1) > 1):
        raise ValueError(f"{name}: scrape is benchmarked without tls and workers")
    return name, settings


def create(spec: str) -> Peer:
    """A new, not yet started peer; ``PeerUnavailable`` when its library is missing."""
    name, settings = parse_spec(spec)
    module_name, class_name = _REGISTRY[name]
    workers = settings.pop("workers", 1)
    if workers > 1:
        module_name, class_name = "workers", "WorkersPeer"
        settings["workers"] = workers
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
        peer = getattr(module, class_name)(**settings)  # may import a setting's library
    except (ImportError, OSError) as exc:  # OSError: a bundled native library that fails to load
        raise PeerUnavailable(
            f'{name} is not available here ({exc}); pip install ".[bench]"'
        ) from exc
    return cast(Peer, peer)


def tls_identity(tls: int) -> tuple[ssl.SSLContext | None, str | None]:
    """For a peer asked to serve ``wss://`` (``tls=1``): a server context with a throwaway
    certificate, and the PEM of the CA the receivers must trust; ``(None, None)`` else."""
    if not tls:
        return None, None
    from agentcast.bench.tls import ThrowawayTLS  # trustme: the bench extra

    identity = ThrowawayTLS(HOST)
    return identity.server_context(), identity.ca_pem


def trust_anchor(peer: Peer) -> str | None:
    """The PEM of the CA a peer serving ``wss://`` chains to; None for a ``ws://`` peer."""
    ca_pem: str | None = getattr(peer, "ca_pem", None)
    return ca_pem
