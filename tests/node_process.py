"""A backplane node or a Publisher in a process of its own, driven over stdin/stdout.

    python tests/node_process.py node URL NAME       # prints "port N"
    python tests/node_process.py publisher URL NAME  # prints "ready"

Then each line on stdin is a command: ``publish COUNT CHANNELS [RATE [EVERY]]``
publishes ``{"pub": NAME, "n": k}`` for k in 0..COUNT-1 round-robin over
channels ``a0..a{CHANNELS-1}`` (at RATE messages/s, or as fast as possible),
after every EVERY-th of them a broadcast ``{"pub": NAME, "b": j}`` (j from 0),
and answers "published"; ``stream COUNT RATE`` streams one run on channel ``s``: one
message ``m`` of COUNT deltas ``"t{k} "`` at RATE deltas/s, then answers "published";
``stop`` (or end of input) stops. Clients of a node subscribe by sending
``{"type": "subscribe", "agent_id": ..., "since": ...}``.
"""

from __future__ import annotations

import sys
import time

from agentcast import Broadcaster, Publisher
from agentcast.memgpt import protocol

HISTORY = 5000


def publish(
    target: Broadcaster | Publisher, name: str, count: int, channels: int, rate: float, every: int
) -> None:
    start = time.monotonic()
    for k in range(count):
        if rate:
            pause = start + k / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        target.publish({"pub": name, "n": k}, f"a{k % channels}")
        if every and (k + 1) % every == 0:
            target.publish({"pub": name, "b": (k + 1) // every - 1}, None)


def stream(target: Broadcaster | Publisher, count: int, rate: float) -> None:
    start = time.monotonic()
    with target.run("s", run_id="r") as run, run.message(message_id="m") as message:
        for k in range(count):
            pause = start + k / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            message.delta(f"t{k} ")


def main(role: str, url: str, name: str) -> None:
    box: list[Broadcaster] = []

    def on_message(client_id: int, data: bytes) -> None:
        message = protocol.parse_client_message(data)
        if isinstance(message, protocol.Subscribe):
            box[0].subscribe(client_id, message.agent_id, message.since)

    if role == "node":
        target: Broadcaster | Publisher = Broadcaster(
            port=0, backplane=url, on_message=on_message, history_size=HISTORY, ping_interval=0
        ).start()
        box.append(target)
        print(f"port {target.port}", flush=True)
    else:
        target = Publisher(url, history_size=HISTORY).start()
        print("ready", flush=True)
    try:
        for line in sys.stdin:
            command, *args = line.split()
            if command == "stop":
                break
            if command == "stream":
                stream(target, int(args[0]), float(args[1]))
            else:
                publish_command(target, name, args)
            if isinstance(target, Publisher):
                target.flush(30)
            print("published", flush=True)
    finally:
        if isinstance(target, Publisher):
            target.close()
        else:
            target.stop()


def publish_command(target: Broadcaster | Publisher, name: str, args: list[str]) -> None:
    count, channels = int(args[0]), int(args[1])
    rate, every = float(args[2] if args[2:] else 0), int(args[3] if args[3:] else 0)
    publish(target, name, count, channels, rate, every)


if __name__ == "__main__":
    main(*sys.argv[1:4])
