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

import subprocess
import sys
from pathlib import Path

from agentcast.app import AgentServer


class ServerProcess:
    """This file run as a process: an AgentServer whose memory is its own."""

    def __init__(self, max_message_size: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(max_message_size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin, self._stdout = self.process.stdin, self.process.stdout
        first = self._stdout.readline()
        if not first.startswith("port "):
            self.process.kill()
            self.stop()
            raise RuntimeError(f"the server process did not start: {first!r}")
        self.port = int(first.split()[1])

    def status(self) -> tuple[int, int]:
        """(connected clients, RSS in KiB)"""
        self._stdin.write("status\n")
        self._stdin.flush()
        _, clients, _, rss = self._stdout.readline().split()
        return int(clients), int(rss)

    def stop(self) -> int:
        self._stdin.close()
        code = self.process.wait(30)
        self._stdout.close()
        return code


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


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
