"""Counting server WebSocket frames by their headers alone, fast enough for millions a second.

Server frames are unmasked, so a header is 2, 4 or 10 bytes and says how many
payload bytes to skip. Walking headers one by one in Python costs 0.1-0.3 µs a
frame, which would make the receiver slower than the server it measures. A
fan-out read, though, is usually one run of frames with identical headers (the
benchmark's messages all have the same size). So ``count_frames`` first checks
whether the whole read is such a run, comparing strided slices of the header
bytes (done in C, about 5 ns a frame), and walks frame by frame only when it is
not. Either way every header is verified.

Latency needs each message's send time, so a sample of connections uses
``StampCounter`` instead, which reads every frame's payload.
"""

from __future__ import annotations

import time
from array import array


def read_header(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """(header size, payload length) of the server frame at ``pos``; None if its header
    is cut off by ``end`` (the caller guarantees its first two bytes are there)."""
    length = data[pos + 1]
    if length < 126:
        return 2, length
    if length == 126:
        return (4, data[pos + 2] << 8 | data[pos + 3]) if pos + 4 <= end else None
    return (10, int.from_bytes(data[pos + 2 : pos + 10], "big")) if pos + 10 <= end else None


def count_frames(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """Count the frames whose headers are complete in ``data[pos:end]``.

    Returns ``(frames, next_pos)``: ``next_pos`` is where the next header
    starts. It is past ``end`` when the last frame's payload continues in the
    next read, and before ``end`` when the next header itself is cut off.
    """
    frames = 0
    while pos + 2 <= end:
        parsed = read_header(data, pos, end)
        if parsed is None:
            break
        header, length = parsed
        size = header + length
        if not frames:  # first frame of the read: try the fast path once
            run = (end - pos) // size
            if run > 1 and _same_headers(data, pos, header, size, run):
                frames = run
                pos += run * size
                continue
        frames += 1
        pos += size
    return frames, pos


def _same_headers(data: bytes | bytearray, pos: int, header: int, size: int, run: int) -> bool:
    """Whether the ``run`` frames of ``size`` bytes at ``pos`` all repeat its header."""
    stop = pos + run * size
    if data[stop - size + 1] != data[pos + 1]:  # cheap reject before slicing
        return False
    return all(data[i:stop:size] == data[i : i + 1] * run for i in range(pos, pos + header))


class FrameCounter:
    """One connection's frame count across reads that split frames anywhere."""

    __slots__ = ("frames", "last_at", "skip", "tail")

    def __init__(self) -> None:
        self.frames = 0
        self.skip = 0  # payload bytes of the last counted frame still to come
        self.tail = b""  # start of a header cut off by the end of a read
        self.last_at = 0.0

    def feed(self, data: bytes | bytearray, end: int) -> None:
        """Account for ``data[:end]``, the next bytes of the stream."""
        self.last_at = time.monotonic()
        if self.tail:
            data = self.tail + bytes(data[:end])
            end = len(data)
        frames, pos = count_frames(data, self.skip, end)
        self.frames += frames
        if pos >= end:
            self.skip, self.tail = pos - end, b""
        else:
            self.skip, self.tail = 0, bytes(data[pos:end])

    def has(self, total: int) -> bool:
        """Whether ``total`` frames have arrived in full (no frame is half-read)."""
        return self.frames >= total and not self.skip and not self.tail


STAMP = b'{"t":'  # how a timestamped message starts (see messages.message)


class StampCounter(FrameCounter):
    """A sampled connection: counts frames and records each one's publish-to-receive latency.

    Messages carry their send time as the first JSON member (``{"t":12.5,...``),
    so reading it is a prefix check and a ``float`` of the bytes up to the first
    comma, with no JSON parse. Frames in one read are all stamped with the time
    of that read. Frames without a stamp are counted only.
    """

    __slots__ = ("buffer", "latencies")

    def __init__(self, latencies: array[float]) -> None:
        super().__init__()
        self.buffer = bytearray()  # bytes of the frame not yet complete
        self.latencies = latencies  # shared by the process's sampled connections

    def feed(self, data: bytes | bytearray, end: int) -> None:
        now = self.last_at = time.monotonic()
        buffer = self.buffer
        buffer += memoryview(data)[:end]
        pos, size = 0, len(buffer)
        while pos + 2 <= size:
            parsed = read_header(buffer, pos, size)
            if parsed is None:
                break
            header, length = parsed
            start, pos_next = pos + header, pos + header + length
            if pos_next > size:
                break
            if buffer.startswith(STAMP, start):
                comma = buffer.index(b",", start, pos_next)
                self.latencies.append(now - float(buffer[start + len(STAMP) : comma]))
            self.frames += 1
            pos = pos_next
        del buffer[:pos]

    def has(self, total: int) -> bool:
        return self.frames >= total and not self.buffer
