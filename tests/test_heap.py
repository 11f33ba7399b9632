"""``keep_heap``: pages freed by a tick stay with the process instead of going back to the kernel.

Each case runs in a fresh interpreter, since the setting is process-wide.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentcast.serve.heap import keep_heap

# Allocates 40 MB of 1,000-byte messages (above pymalloc's limit: glibc's heap, as orjson's
# output is), frees them all at once as a tick does, and prints how much RSS went away.
CHILD = """
import sys
from pathlib import Path
from agentcast import Broadcaster

def rss():
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(l for l in status if l.startswith("VmRSS")).split()[1]) * 1024

threshold = None if sys.argv[1] == "none" else int(sys.argv[1])
hub = Broadcaster(port=None, heap_trim_threshold=threshold)
hub.start()
messages = [bytes(1000) + str(i).encode() for i in range(40_000)]
before = rss()
del messages
print(before - rss())
hub.stop()
"""


def freed_on_release(threshold: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, threshold], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_a_broadcaster_keeps_freed_pages_unless_told_not_to() -> None:
    assert freed_on_release("none") > 30_000_000  # glibc's default: trimmed at once
    assert freed_on_release(str(64 * 1024 * 1024)) < 1_000_000  # kept for the next tick


def test_a_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        keep_heap(0)
