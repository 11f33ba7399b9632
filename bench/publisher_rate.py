"""Publishes per second one ``Publisher`` sustains into Redis, pipelined (issue target: 50,000).

    python bench/publisher_rate.py --redis redis://127.0.0.1:6379/0 --messages 200000 --repeat 3

Without ``--redis`` a redis-server is started on a free port for the run
(``redis-server`` must be installed). Messages are 200-byte JSON objects on
20 channels, published back to back from one thread; the time runs until
Redis has applied the last one (``flush``). Also shown: what ``publish()``
costs the calling thread.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator

from agentcast import Publisher
from agentcast.bench.messages import message

CHANNELS = 20


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """``url`` as given, or a throwaway redis-server (no persistence) for the run."""
    if url is not None:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed; pass --redis URL")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


def measure(url: str, count: int) -> tuple[float, float]:
    """(publishes/s until applied, median µs per publish() call)."""
    events = [message(i) for i in range(count)]
    calls = []
    with Publisher(url, max_pending=count + 1) as publisher:
        start = time.perf_counter()
        for i, event in enumerate(events):
            before = time.perf_counter()
            publisher.publish(event, f"c{i % CHANNELS}")
            calls.append(time.perf_counter() - before)
        assert publisher.flush(120), "Redis did not apply everything in time"
        elapsed = time.perf_counter() - start
        assert publisher.stats()["dropped"] == 0
    return count / elapsed, statistics.median(calls) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=None, metavar="URL")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with redis_server(args.redis) as url:
        for _ in range(args.repeat):
            rate, call_us = measure(url, args.messages)
            print(f"{args.messages:,} publishes: {rate:,.0f}/s applied; publish() {call_us:.2f} us")


if __name__ == "__main__":
    main()
