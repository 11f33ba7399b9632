"""agentcast: push an AI agent's messages to many WebSocket clients at once."""

from agentcast.backplane.publisher import AsyncPublisher, Publisher
from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.interface import AsyncWebSocketInterface, SyncWebSocketInterface
from agentcast.serve.broadcaster import Broadcaster

__all__ = [
    "AgentServer",
    "AsyncPublisher",
    "AsyncWebSocketInterface",
    "Broadcaster",
    "Publisher",
    "SyncWebSocketInterface",
]
__version__ = "0.1.0"
