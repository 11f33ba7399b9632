"""Scale-out: every node delivers every agent's messages, numbered by one broker (Redis).

``script`` holds the key names and the Lua script that numbers a message and
stores and announces it in one round trip; ``outbox`` sends publishes from
any thread to Redis in pipelined batches; ``redis`` is a node's side: it
subscribes to the channels its clients need, feeds the compiled core, and
catches up after a broker hiccup. Its modules need ``redis`` (``pip install ".[redis]"``):
``require_redis`` says so in one line before anything imports them.
"""

from agentcast.extras import require


def require_redis() -> None:
    """Raise ``MissingExtra`` naming ``pip install ".[redis]"`` if redis is not installed."""
    require("redis", "redis", "the Redis backplane")
