"""An AgentServer in a process of its own, so that its memory can be measured alone.

    python tests/agent_server_process.py '{"max_message_size": 4096}'   # prints "port N"

AgentServer keywords come as JSON. Then each line "status" on stdin is answered
"clients C rss KIB channels N"; end of input stops it.
``ServerProcess`` runs it from a test.
glibc's heap is left as it is (``heap_trim_threshold=None``): with the 64 MiB trim
threshold the heap keeps what it once held, and RSS would hide what is freed or not.
One worker thread: a thread started late in a run (with its stack and malloc arena)
would read as growth.
"""

from __future__ import annotations

import json
import sys

from agentcast.memgpt.app import AgentServer
from child_server import ChildServer, rss_kib


class ServerProcess(ChildServer):
    """This file run as a process: an AgentServer whose memory is its own."""

    def __init__(self, **options: object) -> None:
        super().__init__(__file__, json.dumps(options))

    def status(self) -> tuple[int, int]:
        """(connected clients, RSS in KiB)"""
        clients, rss, _ = self.counts()
        return clients, rss

    def counts(self) -> tuple[int, int, int]:
        """(connected clients, RSS in KiB, channels the core keeps)"""
        _, clients, _, rss, _, channels = self.ask("status").split()
        return int(clients), int(rss), int(channels)


def main(options: dict[str, object]) -> None:
    server = AgentServer(port=0, workers=1, heap_trim_threshold=None, **options).start()  # type: ignore[arg-type]
    try:
        print(f"port {server.port}", flush=True)
        for line in sys.stdin:
            if line.strip() == "status":
                channels = server.hub.stats()["channels"]
                clients = server.hub.client_count
                print(f"clients {clients} rss {rss_kib()} channels {channels}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
