"""Types of an event's frames (ext/agentcast/_frames.pyx): the core uses them from C only."""

class EventFrames:
    @property
    def nbytes(self) -> int: ...
    kept: int
