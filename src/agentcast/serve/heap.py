"""Keep glibc from giving the heap back to the kernel after every tick, and faulting it in again.

A publisher thread allocates its messages (orjson's output) one by one; the
loop thread frees a tick's worth of them at once after writing them. With
glibc's default thresholds (trim above 128 KiB of free memory at the heap's
top) each tick then returns those pages to the kernel, and the next publishes
fault them back in, zeroed: on this project's 2-core machine a 100-channel
burst ran at a third of the deliveries/s it reaches with the pages kept.
glibc adjusts its thresholds itself as large blocks are freed, up to 32 MiB
(mmap) and 64 MiB (trim); ``keep_heap`` sets them there from the start.

The setting is process-wide; ``Broadcaster(heap_trim_threshold=None)`` leaves
the allocator alone. Other C libraries (musl) have no such thresholds: a no-op.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("agentcast")

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc refuses more on 64-bit
DEFAULT_TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_heap(trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Keep up to ``trim_threshold`` bytes of freed memory at the heap's top; True if set."""
    if trim_threshold <= 0:
        raise ValueError("trim_threshold must be positive")
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mmap_threshold = min(trim_threshold // 2, MAX_MMAP_THRESHOLD)
    kept = bool(
        mallopt(M_MMAP_THRESHOLD, mmap_threshold) and mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )
    log.debug(
        "heap trim threshold %d bytes: %s", trim_threshold, "set" if kept else "not supported"
    )
    return kept
