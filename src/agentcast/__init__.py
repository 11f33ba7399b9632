"""agentcast: push an AI agent's messages to many WebSocket clients at once."""

from agentcast.app import AgentServer
from agentcast.broadcaster import Broadcaster
from agentcast.interface import AsyncWebSocketInterface, SyncWebSocketInterface

__all__ = ["AgentServer", "AsyncWebSocketInterface", "Broadcaster", "SyncWebSocketInterface"]
__version__ = "0.1.0"
