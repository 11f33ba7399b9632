"""A server script run as a child process, so that its memory can be measured alone.

The script prints ``port N`` once it listens, answers each command line on its stdin
with one line, and stops at the end of its input.
"""

from __future__ import annotations

import subprocess
import sys


class ChildServer:
    """The test's handle on a server script running as a child process."""

    def __init__(self, script: str, argument: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, script, argument],
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

    def ask(self, line: str) -> str:
        """One command, its one-line answer."""
        self._stdin.write(line + "\n")
        self._stdin.flush()
        return self._stdout.readline()

    def stop(self) -> int:
        self._stdin.close()
        code = self.process.wait(30)
        self._stdout.close()
        return code


def rss_kib() -> int:
    """This process's resident memory (KiB), for the script to report."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
