"""The compiled core, imported once, with a clear message when it is missing or stale."""

from __future__ import annotations

from pathlib import Path

from agentcast._sourcehash import source_hash

_REBUILD = 'rebuild it with: pip install -e ".[test]"  (or pip install .)'

try:
    from agentcast._fanout import SOURCE_HASH, FanoutCore, build_frame
    from agentcast._server import ConnectionStats, ServerListener, TransportSink
    from agentcast._sink import CallbackSink, MemorySink, Sink, StreamSink
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        f"agentcast's compiled core could not be imported ({exc}); {_REBUILD}"
    ) from exc


CHECKOUT_EXT_DIR = Path(__file__).resolve().parents[2] / "ext" / "agentcast"


def check_fresh(ext_dir: Path = CHECKOUT_EXT_DIR) -> None:
    """In a source checkout (editable install), the extension must match ext/."""
    expected = source_hash(ext_dir)
    if expected is not None and expected != SOURCE_HASH:
        raise ImportError(
            f"agentcast's compiled core is stale (built from {SOURCE_HASH}, "
            f"sources are {expected}); {_REBUILD}"
        )


check_fresh()

__all__ = [
    "CallbackSink",
    "ConnectionStats",
    "FanoutCore",
    "MemorySink",
    "ServerListener",
    "Sink",
    "StreamSink",
    "TransportSink",
    "build_frame",
]
