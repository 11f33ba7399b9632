"""``agentcast serve`` started as a user starts it, for tests of the real command."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from redis_server import free_port

AGENTCAST = [sys.executable, "-m", "agentcast"]


@contextlib.contextmanager
def serving(*options: str, host: str = "127.0.0.1") -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``agentcast serve --host HOST --port N *options`` once its banner names that address,
    and N; killed afterwards unless it has exited."""
    port = free_port()
    process = subprocess.Popen(
        [*AGENTCAST, "serve", "--host", host, "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"ws://{host}:{port}/" in banner, banner + process.stderr.read()
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=20)
