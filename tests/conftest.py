"""Strict fixtures: every test fails on a leaked loop thread or fd, or an unhandled loop error."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from agentcast import Broadcaster
from browsers import BROWSERS_USED
from echo_server import echo_server
from js_clients import ClientResult, require_js_clients, run_client
from redis_server import RedisServer
from test_rfc6455 import RawClient

NO_REDIS_SERVER = (
    "{count} selected tests need redis-server, which is not installed: apt-get install -y"
    " redis-server, or deselect them with -m 'not redis'"
)

# uvloop opens a process-wide pipe with its first loop; open it before any fd is counted.
uvloop.new_event_loop().close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs redis-server (tests start their own)")


def pytest_itemcollected(item: pytest.Item) -> None:
    if "redis_server" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.redis)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Which browsers the page tests ran in (Firefox is optional: say when it was not)."""
    used = terminalreporter.config.stash.get(BROWSERS_USED, None)
    if used is not None:
        terminalreporter.write_line(used.summary())


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what they deselect
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without redis-server, one line saying how to get it, not an error per test."""
    needing = [item for item in items if item.get_closest_marker("redis")]
    if needing and shutil.which("redis-server") is None:
        raise pytest.UsageError(NO_REDIS_SERVER.format(count=len(needing)))


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("agentcast")]


class _ErrorRecords(logging.Handler):
    """Collects what an event loop logs when a callback or task fails unhandled."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def strict_resources() -> Iterator[None]:
    handler = _ErrorRecords()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(handler)
    fds_before = _open_fds()
    yield
    asyncio_log.removeHandler(handler)
    assert not _loop_threads(), f"leaked threads: {_loop_threads()}"
    assert not handler.records, [r.getMessage() for r in handler.records]
    leaked = {fd for fd in _open_fds() - fds_before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"leaked fds: {[os.readlink(f'/proc/self/fd/{fd}') for fd in leaked]}"


@pytest.fixture
def loop() -> Iterator[uvloop.Loop]:
    """A uvloop loop that is never run: core tests drive ``tick`` themselves."""
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def hub_factory() -> Iterator[Callable[..., Broadcaster]]:
    """Start Broadcasters on free ports; each is stopped at the end of the test."""
    hubs: list[Broadcaster] = []

    def start(**kwargs: object) -> Broadcaster:
        kwargs.setdefault("port", 0)
        hub = Broadcaster(**kwargs).start()  # type: ignore[arg-type]
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


@pytest.fixture
def hub(hub_factory: Callable[..., Broadcaster]) -> Broadcaster:
    return hub_factory()


@pytest.fixture(scope="session")
def js_client() -> Callable[..., ClientResult]:
    """Runs a script of tests/js (``js_clients.run_client``); fails, with how to install
    them, when node or the pinned packages are missing."""
    require_js_clients()
    return run_client


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A persistent redis-server of this test's own, stopped at its end."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def echo() -> Iterator[Broadcaster]:
    """A Broadcaster that echoes every text message back to its sender (echo_server)."""
    with echo_server() as hub:
        yield hub


@pytest.fixture
def connect() -> Iterator[Callable[[int], RawClient]]:
    """Upgraded raw clients, closed at the end of the test (passed or failed)."""
    clients: list[RawClient] = []

    def upgraded(port: int) -> RawClient:
        client = RawClient(port)
        clients.append(client)
        client.upgrade()
        return client

    yield upgraded
    for client in clients:
        client.close()
