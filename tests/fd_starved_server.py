"""A Broadcaster left with ``SPARE`` file descriptors beyond what it holds once listening,
so that accepting runs out of them (EMFILE) after a few connections.

    python tests/fd_starved_server.py   # prints "port N"; stops at end of input
"""

from __future__ import annotations

import logging
import os
import resource
import sys

from agentcast import Broadcaster

SPARE = 3

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with Broadcaster(port=0) as hub:
        held = len(os.listdir("/proc/self/fd"))
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (held + SPARE, hard))
        print(f"port {hub.port}", flush=True)
        sys.stdin.read()
