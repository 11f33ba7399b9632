"""agentcast: push an AI agent's messages to many WebSocket clients at once."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from agentcast.backplane.publisher import AsyncPublisher, Publisher
from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.interface import AsyncWebSocketInterface, SyncWebSocketInterface
from agentcast.serve.broadcaster import Broadcaster

if TYPE_CHECKING:
    from agentcast.client.stream import Client
    from agentcast.client.sync import SyncClient

__all__ = [
    "AgentServer",
    "AsyncPublisher",
    "AsyncWebSocketInterface",
    "Broadcaster",
    "Client",
    "Publisher",
    "SyncClient",
    "SyncWebSocketInterface",
]
__version__ = "0.1.0"

# The clients need websockets, which a server never loads: imported on first use.
_LAZY = {"Client": "agentcast.client.stream", "SyncClient": "agentcast.client.sync"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentcast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
