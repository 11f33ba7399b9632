"""Types of the compiled sinks (ext/agentcast/_sink.pyx): where one client's bytes go."""

import asyncio
from collections.abc import Callable

class Sink:
    fd: int

class MemorySink(Sink):
    backlog: int
    def __init__(self, keep: bool = True) -> None: ...
    @property
    def data(self) -> bytearray | None: ...
    @property
    def received(self) -> int: ...
    @property
    def writes(self) -> int: ...
    @property
    def close_code(self) -> int: ...
    @property
    def close_reason(self) -> str | None: ...
    @property
    def aborted(self) -> bool: ...

class CallbackSink(Sink):
    def __init__(
        self,
        on_bytes: Callable[[bytes], None],
        queued: Callable[[], int],
        close: Callable[[int, str], None],
        abort: Callable[[], None],
        *,
        closing: Callable[[], bool] | None = None,
    ) -> None: ...

class StreamSink(Sink):
    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        close_grace: float,
        end: bytes | None = None,
    ) -> None: ...
    @property
    def ended(self) -> bool: ...
