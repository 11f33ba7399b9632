"""Steady-rate run: delivery latency, agent headroom and publish stalls, one setting at a time.

    python bench/steady.py --clients 1000 --rate 1000 --seconds 5 --release-gil 0 1

The server (loop thread), an "agent" thread doing pure-Python work and a
publisher thread at ``--rate`` messages/s share CPU 0, as an agent process
would; ``clients - 1`` counting receivers and one probe run on CPU 1. The probe
connects last, so it is written last in every round: its publish-to-receive
latency is the round's worst. Headroom is the agent's work rate while
publishing divided by its rate with the same clients connected and idle.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection

import orjson
from picows import WSListener, WSMsgType, ws_connect

from agentcast import Broadcaster
from agentcast.bench.harness import (
    RECEIVER_CPU,
    SERVER_CPU,
    pin_to_cpu,
    raise_fd_limit,
    wait_until,
)
from agentcast.bench.messages import message
from agentcast.bench.publisher import agent_rate
from agentcast.bench.receivers import ReceiverFleet


class _Probe(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.latencies: list[float] = []

    def on_ws_frame(self, transport, frame) -> None:  # type: ignore[no-untyped-def]
        if frame.msg_type == WSMsgType.TEXT:
            sent = orjson.loads(frame.get_payload_as_bytes())["t"]
            self.latencies.append(time.monotonic() - sent)


def _probe(port: int, control: Connection) -> None:
    """Child process: one picows client that timestamps every message it gets."""
    pin_to_cpu(RECEIVER_CPU)

    async def main() -> None:
        transport, probe = await ws_connect(_Probe, f"ws://127.0.0.1:{port}/")
        control.send("ready")
        while not control.poll():
            await asyncio.sleep(0.05)
        control.recv()
        transport.disconnect()
        control.send(probe.latencies)

    asyncio.run(main())


def run(clients: int, rate: float, seconds: float, **settings: object) -> dict[str, float]:
    hub = Broadcaster(port=0, ping_interval=0, **settings).start()  # type: ignore[arg-type]
    fleet = ReceiverFleet(hub.port, clients - 1).start()
    context = multiprocessing.get_context("spawn")
    control, child = context.Pipe()
    probe = context.Process(target=_probe, args=(hub.port, child), daemon=True)
    probe.start()
    assert control.poll(30) and control.recv() == "ready"
    wait_until(lambda: hub.client_count == clients, 60, "clients")
    try:
        idle = agent_rate(2.0)
        stalls: list[float] = []
        count = int(rate * seconds)

        def publisher() -> None:
            start = time.monotonic()
            for i in range(count):
                pause = start + i / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                event = message(i)
                event["t"] = time.monotonic()
                before = time.perf_counter()
                hub.publish(event)
                stalls.append(time.perf_counter() - before)

        thread = threading.Thread(target=publisher)
        thread.start()
        busy = agent_rate(seconds)
        thread.join()
        delivery = fleet.wait_for(count, 30)
        control.send("stop")
        latencies = sorted(control.recv())
    finally:
        fleet.stop()
        probe.join(10)
        hub.stop()
    q = statistics.quantiles(latencies, n=1000)
    return {
        "complete": float(delivery.complete and len(latencies) == count),
        "p50_ms": q[499] * 1e3,
        "p99_ms": q[989] * 1e3,
        "max_ms": latencies[-1] * 1e3,
        "headroom": busy / idle,
        "publish_p99_us": statistics.quantiles(stalls, n=100)[98] * 1e6,
        "publish_max_ms": max(stalls) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--release-gil", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--flush-interval", type=float, default=0.0)
    parser.add_argument("--max-batch-bytes", type=int, default=256 * 1024)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval")
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    raise_fd_limit()
    pin_to_cpu(SERVER_CPU)
    for release in args.release_gil:
        for _ in range(args.repeat):
            result = run(
                args.clients,
                args.rate,
                args.seconds,
                release_gil=bool(release),
                flush_interval=args.flush_interval,
                max_batch_bytes=args.max_batch_bytes,
            )
            shown = " ".join(f"{k}={v:.2f}" for k, v in result.items())
            print(f"release_gil={release} flush={args.flush_interval} {shown}", flush=True)


if __name__ == "__main__":
    main()
