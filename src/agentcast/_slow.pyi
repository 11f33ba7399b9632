"""Types of the compiled slow-consumer policy (ext/agentcast/_slow.pyx)."""

from agentcast.notices import Notices

TRY_AGAIN_LATER: int
SLOW_CONSUMER_REASON: str

class Skipping:
    """One slow client's skip, from the write that took it over its budget until it drains."""

class SlowConsumerPolicy:
    budget: int
    @property
    def skip(self) -> bool: ...
    @property
    def dropped_clients(self) -> int: ...
    @property
    def skip_episodes(self) -> int: ...
    @property
    def skipped_frames(self) -> int: ...
    def __init__(self, mode: str, budget: int, notices: Notices) -> None: ...
