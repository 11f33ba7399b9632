"""agentcast: push an AI agent's messages to many WebSocket clients at once."""

from agentcast.app import AgentServer
from agentcast.broadcaster import Broadcaster
from agentcast.interface import AsyncWebSocketInterface, SyncWebSocketInterface
from agentcast.publisher import AsyncPublisher, Publisher

__all__ = [
    "AgentServer",
    "AsyncPublisher",
    "AsyncWebSocketInterface",
    "Broadcaster",
    "Publisher",
    "SyncWebSocketInterface",
]
__version__ = "0.1.0"
