"""Types of the compiled channel state (ext/agentcast/_history.pyx): seq and history."""

from collections.abc import Hashable

class HistoryLedger:
    """The bytes of history every channel of one core holds together."""

class Channel:
    @property
    def name(self) -> Hashable: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def first_seq(self) -> int: ...
    @property
    def used_tick(self) -> int: ...
    def __init__(
        self, name: Hashable, max_frames: int, max_bytes: int, ledger: HistoryLedger
    ) -> None: ...
    def info(self) -> dict[str, int]: ...
