"""Bounded soak: a steady stream to many clients while some of them keep reconnecting.

    python bench/soak.py --clients 1000 --rate 100 --seconds 60 --churn 0.05

An ``AgentServer`` (the server and a publisher thread on CPU 0) streams
``--rate`` messages/s on one agent channel. A receiver process (CPU 1) holds
``--clients`` picows connections; every second ``--churn`` of them disconnect
and reconnect, resubscribing with ``since`` = the last seq they saw. Each client
checks its own stream: seq must grow by exactly 1 across every reconnect (no
loss, no duplicate) within the history window. Reported: messages lost and
duplicated, p50/p99/max publish-to-receive latency, server RSS at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import threading
import time
from multiprocessing.connection import Connection

import orjson
from picows import WSListener, WSMsgType, ws_connect

from agentcast import AgentServer
from agentcast.bench.harness import RECEIVER_CPU, SERVER_CPU, pin_to_cpu, raise_fd_limit

CHANNEL = "soak"


class _Checker(WSListener):  # type: ignore[misc]
    """One client's view: the last seq it saw, and every break in the sequence."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def on_ws_connected(self, transport) -> None:  # type: ignore[no-untyped-def]
        since = self.state["last"]
        request = {"type": "subscribe", "agent_id": CHANNEL}
        if since is not None:
            request["since"] = since
        transport.send(WSMsgType.TEXT, orjson.dumps(request))

    def on_ws_frame(self, transport, frame) -> None:  # type: ignore[no-untyped-def]
        if frame.msg_type != WSMsgType.TEXT:
            return
        message = orjson.loads(frame.get_payload_as_bytes())
        seq = message.get("seq")
        if seq is None:
            if message.get("code"):
                self.state["gaps"] += 1  # history_trimmed: outside the window
            return
        last = self.state["last"]
        if last is not None and seq != last + 1:
            self.state["lost" if seq > last + 1 else "dupes"] += abs(seq - last - 1) or 1
        self.state["last"] = seq
        self.state["latencies"].append(time.monotonic() - message["t"])


async def _receive(port: int, clients: int, churn: float, control: Connection) -> None:
    url = f"ws://127.0.0.1:{port}/"
    states = [
        {"last": None, "lost": 0, "dupes": 0, "gaps": 0, "latencies": []} for _ in range(clients)
    ]
    transports = [
        (await ws_connect(lambda s=s: _Checker(s), url))[0]
        for s in states  # type: ignore[misc]
    ]
    control.send("ready")
    reconnects = 0
    while not control.poll():
        await asyncio.sleep(1.0)
        chosen = random.sample(range(clients), int(clients * churn))
        for index in chosen:
            transports[index].disconnect()
        await asyncio.gather(*(transports[i].wait_disconnected() for i in chosen))
        fresh = await asyncio.gather(
            *(ws_connect(lambda s=states[i]: _Checker(s), url) for i in chosen)  # type: ignore[misc]
        )
        for index, (transport, _) in zip(chosen, fresh, strict=True):
            transports[index] = transport
        reconnects += len(chosen)
    control.recv()  # "stop"
    final_seq = control.recv()
    await asyncio.sleep(2.0)  # let the tail arrive
    for transport in transports:
        transport.disconnect()
    latencies = [x for s in states for x in s["latencies"]]
    control.send(
        {
            "reconnects": reconnects,
            "lost": sum(s["lost"] for s in states),
            "duplicated": sum(s["dupes"] for s in states),
            "gap_notices": sum(s["gaps"] for s in states),
            "short_at_end": sum(1 for s in states if s["last"] != final_seq),
            "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1e3,
            "max_ms": max(latencies) * 1e3,
        }
    )


def _receiver(port: int, clients: int, churn: float, control: Connection) -> None:
    pin_to_cpu(RECEIVER_CPU)
    raise_fd_limit()
    asyncio.run(_receive(port, clients, churn, control))


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--churn", type=float, default=0.05)
    args = parser.parse_args()
    raise_fd_limit()
    pin_to_cpu(SERVER_CPU)
    server = AgentServer(port=0, ping_interval=0, history_size=100_000, history_bytes=64 << 20)
    server.start()
    context = multiprocessing.get_context("spawn")
    control, child = context.Pipe()
    receiver = context.Process(
        target=_receiver, args=(server.port, args.clients, args.churn, child), daemon=True
    )
    receiver.start()
    assert control.poll(120) and control.recv() == "ready"
    rss_start = _rss_mib()
    count = int(args.rate * args.seconds)

    def publish() -> None:
        start = time.monotonic()
        for i in range(count):
            pause = start + i / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            server.hub.publish({"type": "agent_response", "n": i, "t": time.monotonic()}, CHANNEL)

    publisher = threading.Thread(target=publish)
    publisher.start()
    publisher.join()
    control.send("stop")
    control.send(count)  # the last seq: this publisher is the channel's only one
    result = control.recv() if control.poll(60) else {"error": "no report"}
    rss_end = _rss_mib()
    receiver.join(10)
    server.stop()
    print(f"clients={args.clients} rate={args.rate}/s seconds={args.seconds} churn={args.churn}")
    print(f"server RSS start={rss_start:.1f} MiB end={rss_end:.1f} MiB")
    print(
        " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    )


if __name__ == "__main__":
    main()
