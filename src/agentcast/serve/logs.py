"""Log records for operators: picows' client-fault lines demoted and counted, JSON lines.

A client must not be able to write ERROR lines: picows logs every malformed frame a
client sends ("WS parser error") at ERROR, so a hostile client could flood the server's
error log and bury its real faults. ``ClientFaultLog`` stands in for picows' logger and
logs those at INFO, counted; ERROR stays for what goes wrong in the server itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from agentcast.serve.connect_log import BURST, RATE
from agentcast.serve.token_bucket import TokenBucket

__all__ = ["CLIENT_FAULTS", "FIELDS", "ClientFaultLog", "JsonFormatter", "OncePerClient"]

CLIENT_FAULTS = ("WS parser error",)
"""How picows' messages about a client's malformed frames begin (picows 2.x)."""


class ClientFaultLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows' logger for a server's connections: its client-fault records at INFO, each
    one counted through ``on_fault``. Not a ``logging.Logger``, so picows does not make a
    child logger per connection either."""

    def __init__(self, logger: logging.Logger, on_fault: Callable[[], None]) -> None:
        super().__init__(logger, {})
        self._on_fault = on_fault

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR and isinstance(msg, str) and msg.startswith(CLIENT_FAULTS):
            self._on_fault()
            level = logging.INFO
        super().log(level, msg, *args, **kwargs)


class OncePerClient:
    """Which clients were logged already, so a client repeating a bad request costs one log
    line, not one a message. It remembers the last ``capacity`` clients it said yes for
    (client ids are never reused): bounded whatever the clients do. Across clients the
    lines are drawn from a bucket of ``burst`` refilled at ``rate`` a second, as connect
    lines are (``agentcast.serve.connect_log``): a flood of connections that each send one
    bad request is counted by the caller, not logged line by line. One thread only."""

    def __init__(
        self,
        capacity: int = 4096,
        rate: float = RATE,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = capacity
        self._logged: dict[int, None] = {}  # insertion order: oldest first
        self._lines = TokenBucket(rate, burst, clock)

    def first(self, client_id: int) -> bool:
        """True the first time ``client_id`` is asked about while the bucket holds a line
        (log it then)."""
        if client_id in self._logged:
            return False
        if not self._lines.take():
            return False
        if len(self._logged) >= self._capacity:
            del self._logged[next(iter(self._logged))]
        self._logged[client_id] = None
        return True


FIELDS = (
    "peer",
    "client_id",
    "code",
    "reason",
    "closed_by",
    "duration_s",
    "not_logged",
    "window_s",
)
"""Record attributes a JSON line carries as keys of their own (the connect and disconnect
lines set them through ``extra``, and the line counting those left out,
``agentcast.serve.connect_log``)."""


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers: time (UTC, ISO 8601), level, logger,
    message, the ``FIELDS`` a record has, and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
