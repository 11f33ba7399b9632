"""The rollup window of a run, measured: frames and bytes each watcher is sent, and how late
each delta reaches it, for a few windows in the same run.

    python bench/rollup.py --watchers 100 --deltas 1000 --rate 50 --windows 0 0.02 0.05 0.1

One agent streams one message of ``--deltas`` deltas (``"t<i> "``) at ``--rate`` a second
through ``hub.run(channel, rollup=window)`` to ``--watchers`` picows clients of the native
protocol in this process (127.0.0.1 only). A delta's latency is when the frame carrying it
arrived minus when the agent handed it over; every watcher's text is checked whole.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import threading
import time
from typing import Any

import orjson
from picows import WSListener, WSMsgType, ws_connect

from agentcast import Broadcaster

PIECE = re.compile(r"t(\d+) ")


class Watcher(WSListener):  # type: ignore[misc]
    """Counts frames and bytes, keeps each delta's arrival time and the text."""

    def __init__(self) -> None:
        self.frames = self.bytes = 0
        self.arrived: dict[int, float] = {}
        self.text: list[str] = []
        self.done = asyncio.Event()

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.monotonic()
        payload = frame.get_payload_as_bytes()
        event = orjson.loads(payload)
        self.frames += 1
        self.bytes += len(payload)
        if event["type"] == "message_delta":
            self.text.append(event["delta"])
            for index in PIECE.findall(event["delta"]):
                self.arrived[int(index)] = now
        elif event["type"] == "run_end":
            self.done.set()


def stream(hub: Broadcaster, window: float, deltas: int, rate: float, sent: list[float]) -> None:
    start = time.monotonic()
    with hub.run("a", rollup=window) as run, run.message() as message:
        for index in range(deltas):
            pause = start + index / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent.append(time.monotonic())
            message.delta(f"t{index} ")


async def measure(window: float, watchers: int, deltas: int, rate: float) -> dict[str, Any]:
    def subscribe(client_id: int) -> None:
        hub.subscribe(client_id, "a")

    hub = Broadcaster(port=0, on_connect=subscribe, ping_interval=0).start()
    try:
        url = f"ws://127.0.0.1:{hub.port}/?protocol=agentcast"
        connections = [await ws_connect(Watcher, url) for _ in range(watchers)]
        deadline = time.monotonic() + 30
        while hub.stats()["subscriptions"] < watchers:  # on_connect subscribes each
            assert time.monotonic() < deadline, "the watchers were not all subscribed"
            await asyncio.sleep(0.01)
        sent: list[float] = []
        producer = threading.Thread(target=stream, args=(hub, window, deltas, rate, sent))
        producer.start()
        for _, watcher in connections:
            await asyncio.wait_for(watcher.done.wait(), deltas / rate + 30)
        producer.join()
        full = "".join(f"t{i} " for i in range(deltas))
        late = []
        for _, watcher in connections:
            assert "".join(watcher.text) == full, "a watcher's text differs"
            late += [(watcher.arrived[i] - sent[i]) * 1000 for i in range(deltas)]
        late.sort()
        first = connections[0][1]
        for transport, _ in connections:
            transport.disconnect()
        return {
            "window_s": window,
            "frames": first.frames,
            "bytes": first.bytes,
            "p50_ms": statistics.median(late),
            "p99_ms": late[int(len(late) * 0.99)],
        }
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--deltas", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="deltas per second")
    parser.add_argument("--windows", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1])
    args = parser.parse_args()
    print("window s   frames/watcher   bytes/watcher   delta p50 ms   delta p99 ms")
    for window in args.windows:
        row = asyncio.run(measure(window, args.watchers, args.deltas, args.rate))
        print(f"{row['window_s']:>8}   {row['frames']:>14,}   {row['bytes']:>13,}   "
              f"{row['p50_ms']:>12.2f}   {row['p99_ms']:>12.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
