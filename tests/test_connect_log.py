"""Connect and disconnect lines up to a rate, then one summary line an interval (issue 24):
a client reconnecting in a tight loop must not write two lines a connection."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import uvloop
import websockets

from agentcast.serve.connect_log import BURST, RATE, SUMMARY_INTERVAL, ConnectLog
from clients import run
from redis_server import free_port

FLOOD = 2_000
FLOOD_CLIENTS = 8  # connecting at once, each in a tight loop


class Clock:
    """Seconds as the test sets them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def reconnect_in_a_loop(port: int, connections: int) -> None:
    """``connections`` WebSocket connections opened and closed back to back, as MemGPT's
    example client does once its stdin ends, by ``FLOOD_CLIENTS`` clients at once."""
    left = connections

    async def one_client() -> None:
        nonlocal left
        while left:
            left -= 1
            async with websockets.connect(f"ws://127.0.0.1:{port}/"):
                pass

    await asyncio.gather(*(one_client() for _ in range(FLOOD_CLIENTS)))


def test_a_connect_flood_writes_lines_up_to_the_rate_and_a_summary_counting_the_rest(
    tmp_path: Path,
) -> None:
    """``agentcast serve`` with its default log level, JSON lines: 2,000 connections in a
    tight loop write both lines of at most a bucket's worth of them, and summaries whose
    counts make up the rest (the last one written at shutdown)."""
    port = free_port()
    with (tmp_path / "stderr").open("w+") as stderr:
        argv = [sys.executable, "-m", "agentcast", "serve", "--port", str(port)]
        with subprocess.Popen(
            [*argv, "--log-format", "json"], stdout=subprocess.PIPE, stderr=stderr, text=True
        ) as process:
            try:
                assert process.stdout is not None
                assert f"ws://127.0.0.1:{port}/" in process.stdout.readline()
                started = time.monotonic()
                run(reconnect_in_a_loop(port, FLOOD))
                elapsed = time.monotonic() - started
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=15)
            finally:
                if process.poll() is None:
                    process.kill()
        assert process.returncode == 0
        stderr.seek(0)
        lines = [json.loads(line) for line in stderr]
    connects = [line for line in lines if "peer" in line and "duration_s" not in line]
    disconnects = [line for line in lines if "duration_s" in line]
    summaries = [line for line in lines if "not_logged" in line]
    others = [line for line in lines if line not in connects + disconnects + summaries]
    assert others == []
    assert len(connects) <= BURST + RATE * elapsed + 1, (len(connects), elapsed)
    assert {line["client_id"] for line in disconnects} == {line["client_id"] for line in connects}
    assert len(connects) + sum(line["not_logged"] for line in summaries) == FLOOD
    assert 1 <= len(summaries) <= elapsed / SUMMARY_INTERVAL + 2
    assert all(line["level"] == "INFO" and line["window_s"] >= 0 for line in summaries)


def test_a_trickle_below_the_rate_is_logged_whole(
    loop: uvloop.Loop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentcast")
    clock = Clock()
    connect_log = ConnectLog(logging.getLogger("agentcast.server"), loop.call_later, clock=clock)
    for _ in range(3 * BURST):  # three bursts' worth: the rate holds, not just the bucket
        clock.now += 1.05 / RATE
        assert connect_log.allows()
    connect_log.close()
    assert caplog.records == []


def test_past_the_bucket_connections_are_counted_in_one_summary_an_interval(
    loop: uvloop.Loop, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 connections a second for 3 s: a bucket's worth and the rate's logged, the rest
    counted; one timer an interval while connections are left out, none when idle."""
    caplog.set_level(logging.INFO, logger="agentcast")
    clock = Clock()
    timers: list[float] = []

    def call_later(delay: float, callback: Any) -> asyncio.TimerHandle:
        timers.append(delay)
        return loop.call_later(delay, callback)

    interval = 0.01  # real seconds: the summary's timer runs on the loop
    logger = logging.getLogger("agentcast.server")
    connect_log = ConnectLog(logger, call_later, interval=interval, clock=clock)

    def flood(connections: int) -> int:
        allowed = 0
        for _ in range(connections):
            clock.now += 0.001
            allowed += connect_log.allows()
        return allowed

    summarized = loop.create_future()
    handler = _OnRecord(lambda: summarized.done() or summarized.set_result(None))
    logger.addHandler(handler)
    try:
        first = flood(3_000)
        loop.run_until_complete(asyncio.wait_for(summarized, 10))
    finally:
        logger.removeHandler(handler)
    assert BURST + RATE * 3 - 1 <= first <= BURST + RATE * 3 + 1
    assert len(timers) == 1
    clock.now += 3_600.0  # idle: nothing more is written, no timer set
    assert flood(BURST) == BURST
    second = flood(1_000)
    connect_log.close()
    assert len(timers) == 2
    counts = [record.not_logged for record in caplog.records]  # type: ignore[attr-defined]
    assert counts == [3_000 - first, 1_000 - second]
    assert "were not logged" in caplog.records[0].getMessage()


class _OnRecord(logging.Handler):
    """Calls ``then()`` for each record it handles."""

    def __init__(self, then: Any) -> None:
        super().__init__()
        self._then = then

    def emit(self, record: logging.LogRecord) -> None:
        self._then()
