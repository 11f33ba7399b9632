"""The servers under comparison, behind one small interface: start, publish, client_count, stop.

Each peer serves on 127.0.0.1 with pings off (the raw receivers never answer
them, and a ping frame would be counted as a message) from a thread of the
process that creates it, and is published to from another thread of that
process, the way an agent would use it. Peer modules are imported only when
asked for, so an optional library (socketify) that is missing costs nothing
until its peer is chosen.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, cast

HOST = "127.0.0.1"

# name -> (module under agentcast.loadgen.peers, class)
_REGISTRY = {
    "agentcast": ("agentcast", "AgentcastPeer"),
    "memgpt": ("memgpt", "MemgptPeer"),
    "websockets": ("websockets", "WebsocketsPeer"),
    "picows": ("picows", "PicowsPeer"),
    "pyfanout": ("pyfanout", "PyfanoutPeer"),
    "socketify": ("socketify", "SocketifyPeer"),
}
NAMES = tuple(_REGISTRY)


class Peer(Protocol):
    """A server under test, as its publisher thread sees it."""

    def start(self) -> int:
        """Start serving on 127.0.0.1; return the bound port."""

    def publish(self, obj: Any) -> None:
        """Send ``obj`` as JSON to every connected client; called from a non-loop thread."""

    @property
    def client_count(self) -> int: ...

    def stop(self) -> None: ...


class PeerUnavailable(Exception):
    """The peer's library cannot be imported here: it is skipped, not failed."""


def create(name: str) -> Peer:
    """A new, not yet started peer; ``PeerUnavailable`` when its library is missing."""
    module_name, class_name = _REGISTRY[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except (ImportError, OSError) as exc:  # OSError: a bundled native library that fails to load
        raise PeerUnavailable(
            f"{name} is not available here ({exc}); pip install 'agentcast[bench]'"
        ) from exc
    return cast(Peer, getattr(module, class_name)())
