"""Listening sockets with an accept loop of our own.

uvloop's and aiofastnet's servers show a connection to the application only once its TLS
handshake is done. Here each accepted socket goes to ``on_accept`` first, with its peer's
address, before any transport, protocol or TLS state exists for it; ``on_accept`` closes
it or hands it to the event loop's ``connect_accepted_socket``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Acceptor", "listening_sockets"]

log = logging.getLogger("agentcast.server")

BACKLOG = 100  # asyncio's and uvloop's default
ACCEPT_RETRY_DELAY = 1.0  # seconds without accepting after the process ran out of fds
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

OnAccept = Callable[[socket.socket, Any], None]


async def listening_sockets(host: str | None, port: int, reuse_port: bool) -> list[socket.socket]:
    """One bound, listening, non-blocking socket per address ``host`` resolves to (as
    ``loop.create_server`` binds them: SO_REUSEADDR, IPv6 sockets IPv6 only)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {reason}"
                ) from None
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Acceptor:
    """Accepts on ``sockets`` for ``on_accept`` until closed; keeps the tasks it is given
    (``run``) referenced until they end."""

    def __init__(self, sockets: list[socket.socket], on_accept: OnAccept) -> None:
        self.sockets = sockets
        self._on_accept = on_accept
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        for sock in sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(BACKLOG):  # what is waiting, at most a backlog per wake-up
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                log.warning(
                    "cannot accept connections (%s); retrying in %.0f s", exc, ACCEPT_RETRY_DELAY
                )
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume, listening)
                return
            sock.setblocking(False)
            self._on_accept(sock, address)

    def _resume(self, listening: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (connections stay)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
