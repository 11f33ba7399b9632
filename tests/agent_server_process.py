"""An AgentServer in a process of its own, so that its memory can be measured alone.

    python tests/agent_server_process.py MAX_MESSAGE_SIZE   # prints "port N"

Then each line "status" on stdin is answered "clients C rss KIB"; end of input stops it.
``ServerProcess`` runs it from a test.
glibc's heap is left as it is (``heap_trim_threshold=None``): with the 64 MiB trim
threshold the heap keeps what it once held, and RSS would hide what is freed or not.
One worker thread: a thread started late in a run (with its stack and malloc arena)
would read as growth.
"""

from __future__ import annotations

import sys

from agentcast.app import AgentServer
from child_server import ChildServer, rss_kib


class ServerProcess(ChildServer):
    """This file run as a process: an AgentServer whose memory is its own."""

    def __init__(self, max_message_size: int) -> None:
        super().__init__(__file__, str(max_message_size))

    def status(self) -> tuple[int, int]:
        """(connected clients, RSS in KiB)"""
        _, clients, _, rss = self.ask("status").split()
        return int(clients), int(rss)


def main(max_message_size: int) -> None:
    server = AgentServer(
        port=0, workers=1, max_message_size=max_message_size, heap_trim_threshold=None
    ).start()
    try:
        print(f"port {server.port}", flush=True)
        for line in sys.stdin:
            if line.strip() == "status":
                print(f"clients {server.hub.client_count} rss {rss_kib()}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]))
