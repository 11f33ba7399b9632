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
import sys

from agentcast import Broadcaster
from child_server import ChildServer, rss_kib


class BroadcasterProcess(ChildServer):
    """The test's handle on this script run as a child process."""

    def __init__(self, **options: object) -> None:
        super().__init__(__file__, json.dumps(options))

    def status(self) -> dict[str, int]:
        """``rss_kib`` and the hub's ``stats()``."""
        return json.loads(self.ask("status"))  # type: ignore[no-any-return]

    def publish(self, tag: str, count: int, size: int) -> None:
        self.ask(f"publish {tag} {count} {size}")


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
