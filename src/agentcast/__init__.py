"""agentcast: push an AI agent's messages to many WebSocket clients at once."""

from agentcast.broadcaster import Broadcaster

__all__ = ["Broadcaster"]
__version__ = "0.1.0"
