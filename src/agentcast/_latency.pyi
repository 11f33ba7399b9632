"""Types of the compiled publish-to-write latency histogram (ext/agentcast/_latency.pyx)."""

SAMPLE_EVERY: int
LATENCY_BOUNDS: tuple[float, ...]

class PublishLatency:
    def histogram(self) -> tuple[tuple[float, ...], list[int], float, int]: ...
