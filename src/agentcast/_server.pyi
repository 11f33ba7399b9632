"""Types of the compiled picows glue (ext/agentcast/_server.pyx)."""

from collections.abc import Callable

from picows import WSListener, WSTransport

from agentcast._fanout import FanoutCore
from agentcast._sink import Sink

class TransportSink(Sink):
    def __init__(self, transport: WSTransport, close_grace: float) -> None: ...

class ServerListener(WSListener):
    client_id: int
    def __init__(
        self,
        core: FanoutCore,
        on_message: Callable[[int, bytes], None] | None,
        on_binary: Callable[[int, bytes], None] | None,
        close_grace: float,
        max_message_size: int,
        max_message_rate: float = 0.0,
    ) -> None: ...
