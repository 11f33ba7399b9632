"""The identity of each authenticated client, and its expiry, on the loop thread.

One timer per client at its token's ``exp`` (a loop timer, not a check per message):
the client is closed with ``TOKEN_EXPIRED`` (3005) unless a refresh moved it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from agentcast._ext import FanoutCore
from agentcast.serve.auth import TOKEN_EXPIRED, Identity

__all__ = ["Sessions"]

log = logging.getLogger("agentcast.auth")

EXPIRED_REASON = "token expired"


class Sessions:
    """Client id -> identity and expiry timer. Loop thread only."""

    def __init__(self, core: FanoutCore, loop: asyncio.AbstractEventLoop) -> None:
        self._core = core
        self._loop = loop
        self._identities: dict[int, Identity | None] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._forbidden_logged: set[int] = set()  # connected clients only
        self.expired = 0
        self.forbidden = 0

    def __len__(self) -> int:
        return len(self._identities)

    def open(self, client_id: int, identity: Identity | None) -> None:
        self._identities[client_id] = identity
        self._schedule(client_id, identity)

    def close(self, client_id: int) -> None:
        self._identities.pop(client_id, None)
        self._forbidden_logged.discard(client_id)
        timer = self._timers.pop(client_id, None)
        if timer is not None:
            timer.cancel()

    def identity(self, client_id: int) -> Identity | None:
        return self._identities.get(client_id)

    def forbid(self, client_id: int) -> bool:
        """Count a refused request; True the first time for this connection."""
        self.forbidden += 1
        if client_id in self._forbidden_logged or client_id not in self._identities:
            return False
        self._forbidden_logged.add(client_id)
        return True

    def stats(self) -> dict[str, int]:
        return {"tokens_expired": self.expired, "forbidden": self.forbidden}

    def renew(self, client_id: int, identity: Identity) -> None:
        """Replace a connected client's identity (a refreshed token) and its expiry."""
        if client_id not in self._identities:
            raise KeyError(client_id)
        logged = client_id in self._forbidden_logged
        self.close(client_id)
        self.open(client_id, identity)
        if logged:
            self._forbidden_logged.add(client_id)

    def _schedule(self, client_id: int, identity: Identity | None) -> None:
        if identity is None or identity.expires_at is None:
            return
        delay = max(0.0, identity.expires_at - time.time())
        self._timers[client_id] = self._loop.call_later(delay, self._expire, client_id)

    def _expire(self, client_id: int) -> None:
        self._timers.pop(client_id, None)
        self.expired += 1
        log.info("client %d: token expired, closing (%d)", client_id, TOKEN_EXPIRED)
        self._core.flush()  # what it was already sent goes out before the close
        self._core.close_client(client_id, TOKEN_EXPIRED, EXPIRED_REASON)
