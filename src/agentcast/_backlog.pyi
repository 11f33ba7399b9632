"""Types of the compiled backlog of a lagging client (ext/agentcast/_backlog.pyx): the core
uses it from C only."""

MERGE_LIMIT: int

class Merge: ...

class Backlog:
    @property
    def nbytes(self) -> int: ...
    @property
    def frames(self) -> int: ...
