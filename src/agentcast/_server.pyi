"""Types of the compiled picows glue (ext/agentcast/_server.pyx)."""

from collections.abc import Callable

from picows import WSListener, WSTransport

from agentcast._fanout import FanoutCore
from agentcast._sink import Sink
from agentcast.serve.connect_log import ConnectLog

CLOSED_BY: tuple[str, str, str]
CLOSE_CODES: tuple[int, ...]
CLOSE_LABELS: tuple[str, ...]
DROP_REASONS: dict[str, tuple[int, ...]]

class ConnectionStats:
    @property
    def protocol_errors(self) -> int: ...
    def client_fault(self) -> None: ...
    def closes(self) -> dict[tuple[str, str], int]: ...
    def stats(self) -> dict[str, int]: ...

class TransportSink(Sink):
    def __init__(self, transport: WSTransport, close_grace: float) -> None: ...

class ServerListener(WSListener):
    client_id: int
    def __init__(
        self,
        core: FanoutCore,
        stats: ConnectionStats,
        connect_log: ConnectLog,
        on_message: Callable[[int, bytes], None] | None,
        on_binary: Callable[[int, bytes], None] | None,
        close_grace: float,
        max_message_size: int,
        max_message_rate: float = 0.0,
        encoding: int = 0,
    ) -> None: ...
