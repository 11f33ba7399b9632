"""A Broadcaster in a process of its own, so that its memory can be measured alone.

    python tests/broadcaster_process.py '{"channel_ttl": 0.2}'   # prints "port N"

Broadcaster keywords come as JSON. Commands on stdin, one a line, each answered with
one JSON line: ``status`` (``rss_kib`` and every ``stats()`` counter) and
``publish TAG COUNT SIZE`` (one message of SIZE bytes to each of the channels
TAG-0 .. TAG-<COUNT-1>; answered once queued). End of input stops it. glibc's heap is
left as it is (``heap_trim_threshold=None``), as in agent_server_process.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from agent_server_process import rss_kib
from agentcast import Broadcaster


class BroadcasterProcess:
    """The test's handle on this script run as a child process."""

    def __init__(self, **options: object) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, json.dumps(options)],
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
        self.url = f"ws://127.0.0.1:{self.port}/"

    def _ask(self, line: str) -> Any:
        self._stdin.write(line + "\n")
        self._stdin.flush()
        return json.loads(self._stdout.readline())

    def status(self) -> dict[str, int]:
        """``rss_kib`` and the hub's ``stats()``."""
        return self._ask("status")  # type: ignore[no-any-return]

    def publish(self, tag: str, count: int, size: int) -> None:
        self._ask(f"publish {tag} {count} {size}")

    def stop(self) -> int:
        self._stdin.close()
        code = self.process.wait(30)
        self._stdout.close()
        return code


def main(options: dict[str, object]) -> None:
    hub = Broadcaster(port=0, heap_trim_threshold=None, **options).start()  # type: ignore[arg-type]
    try:
        print(f"port {hub.port}", flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "publish":
                tag, count, size = args[0], int(args[1]), int(args[2])
                for i in range(count):
                    hub.publish({"pad": "x" * size}, channel=f"{tag}-{i}")
                print("{}", flush=True)
            elif command == "status":
                print(json.dumps({"rss_kib": rss_kib(), **hub.stats()}), flush=True)
    finally:
        hub.stop()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
