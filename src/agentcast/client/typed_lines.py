"""The lines a user types, read on a daemon thread and handed to an event loop.

Reading on the loop (or in its default executor) would keep Ctrl-C waiting: the
executor's thread is joined at exit, and it only returns when a line comes. A daemon
thread reading the file descriptor with ``os.read`` (no ``sys.stdin`` buffer, whose lock
a thread blocked in it holds at interpreter shutdown) is left behind at exit instead.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import threading

__all__ = ["TypedLines"]

CHUNK = 64 * 1024


class TypedLines:
    """``await get()``: the next line without its newline; None once the input ended."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._ended = False
        threading.Thread(target=self._read, args=(fd,), name="typed-lines", daemon=True).start()

    @property
    def ended(self) -> bool:
        """Every line was taken, and then the end of the input."""
        return self._ended

    async def get(self) -> str | None:
        if self._ended:
            return None
        line = await self._lines.get()
        self._ended = line is None
        return line

    def _read(self, fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        partial = ""
        while chunk := _read_chunk(fd):
            *lines, partial = (partial + decoder.decode(chunk)).split("\n")
            for line in lines:
                if not self._hand_over(line):
                    return
        last = partial + decoder.decode(b"", final=True)  # a last line without a newline
        if not last or self._hand_over(last):
            self._hand_over(None)

    def _hand_over(self, line: str | None) -> bool:
        """False once the loop is closed: nobody reads any more."""
        try:
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line)
        except RuntimeError:
            return False
        return True


def _read_chunk(fd: int) -> bytes:
    """The next bytes typed; b"" at the end of the input (or if it cannot be read)."""
    try:
        return os.read(fd, CHUNK)
    except OSError:
        return b""
