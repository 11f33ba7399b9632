"""The kernel's floor for one fan-out round: a send(2) per client and nothing else.

    python bench/sendfloor.py --clients 1000 --size 3000 --repeat 3

No event loop, no framing, no GIL contention, no agent: this process (CPU 0)
sends ``size`` bytes to each of ``clients`` loopback TCP sockets, round after
round, while a child process (CPU 1) drains them. Between rounds it sleeps so
that sending takes ``--duty`` of the core, as a server leaving the rest to an
agent would. A round's time is the least any server, in any language, pays on
this machine to write one batch to every client; RESULTS.md compares
agentcast's write rounds with it. 3,000 bytes is what 1,000 msg/s of 200-byte
messages puts in each client's round when rounds run ~70 times a second.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import selectors
import socket
import statistics
import time
from multiprocessing.synchronize import Event

from agentcast.bench.harness import RECEIVER_CPU, SERVER_CPU, pin_to_cpu, raise_fd_limit

WARMUP_ROUNDS = 20
READ_BYTES = 1 << 16


def _drain(port: int, clients: int, stop: Event) -> None:
    """Child process: connect ``clients`` sockets and read whatever arrives until ``stop``."""
    pin_to_cpu(RECEIVER_CPU)
    raise_fd_limit()
    selector = selectors.DefaultSelector()
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(clients)]
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in selector.select(0.1):
            with contextlib.suppress(BlockingIOError):
                key.fileobj.recv(READ_BYTES)  # type: ignore[union-attr]
    for sock in sockets:
        sock.close()


def measure(clients: int, size: int, rounds: int, duty: float) -> list[float]:
    """Seconds per round of one non-blocking send to every client."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    stop = multiprocessing.get_context("spawn").Event()
    drainer = multiprocessing.get_context("spawn").Process(
        target=_drain, args=(listener.getsockname()[1], clients, stop), daemon=True
    )
    drainer.start()
    accepted = []
    try:
        for _ in range(clients):
            conn, _ = listener.accept()
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            accepted.append(conn)
        data = b"x" * size
        times = []
        for _ in range(WARMUP_ROUNDS + rounds):
            start = time.perf_counter()
            for conn in accepted:
                conn.send(data)
            spent = time.perf_counter() - start
            times.append(spent)
            time.sleep(spent * (1.0 - duty) / duty)
        return times[WARMUP_ROUNDS:]
    finally:
        stop.set()
        drainer.join(10)
        for conn in accepted:
            conn.close()
        listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--size", type=int, default=3000, help="bytes per client per round")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--duty", type=float, default=0.5, help="share of the core spent sending")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not 0.0 < args.duty <= 1.0:
        parser.error("--duty must be in (0, 1]")
    raise_fd_limit()
    pin_to_cpu(SERVER_CPU)
    for _ in range(args.repeat):
        times = measure(args.clients, args.size, args.rounds, args.duty)
        p50 = statistics.median(times)
        p99 = statistics.quantiles(times, n=100)[98]
        print(
            f"clients={args.clients} size={args.size} duty={args.duty}:"
            f" round p50 {p50 * 1e3:.2f} ms p99 {p99 * 1e3:.2f} ms max {max(times) * 1e3:.2f} ms;"
            f" {p50 / args.clients * 1e6:.2f} us per send",
            flush=True,
        )


if __name__ == "__main__":
    main()
