"""What the tests check of an agent event stream as a client receives it, and the
native clients and hubs they use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from agentcast import Broadcaster

NATIVE = "?protocol=agentcast"


def check_stream(events: list[dict[str, Any]]) -> None:
    """What every client of the field demands of a stream from its first frame: a run
    opened before anything in it, a message or tool call started before its deltas and
    ended once, nothing after run_end, seq rising."""
    open_run = False
    started: set[str] = set()
    ended: set[str] = set()
    last_seq = 0
    for event in events:
        kind = event["type"]
        assert event["seq"] > last_seq, f"seq went back at {event}"
        last_seq = event["seq"]
        stream = event.get("message_id") or event.get("tool_call_id")
        if kind == "run_start":
            assert not open_run
            open_run = True
            continue
        assert open_run, f"{kind} outside a run"
        if kind in ("message_start", "tool_call_start"):
            assert stream not in started
            started.add(stream)
        elif kind in ("message_delta", "tool_call_delta"):
            assert stream in started and stream not in ended, f"{kind} of {stream} not open"
        elif kind in ("message_end", "tool_call_end"):
            assert stream in started and stream not in ended
            ended.add(stream)
        elif kind in ("run_end", "run_error"):
            assert started == ended, "run ended with something open"
            open_run = False


def text(events: list[dict[str, Any]], message_id: str) -> str:
    return "".join(
        e["delta"] for e in events if e["type"] == "message_delta" and e["message_id"] == message_id
    )


async def read_until(websocket: Any, kind: str) -> list[dict[str, Any]]:
    """Events (acks left out) until one of type ``kind``, inclusive."""
    events = []
    while True:
        event = orjson.loads(await websocket.recv())
        if "seq" in event:
            events.append(event)
        if event["type"] == kind:
            return events


def subscribing_hub(hub_factory: Callable[..., Broadcaster], **options: Any) -> Broadcaster:
    """A hub that subscribes a client to ``{"channel": C, "since": N?}`` when asked."""
    hubs: list[Broadcaster] = []

    def on_message(client_id: int, data: bytes) -> None:
        request = orjson.loads(data)
        ack = orjson.dumps({"type": "subscribed", "channel": request["channel"]})
        hubs[0].subscribe(client_id, request["channel"], request.get("since"), ack=ack)

    hubs.append(hub_factory(on_message=on_message, **options))
    return hubs[0]


async def subscribe(watcher: Any, channel: str, since: int | None = None) -> None:
    await watcher.send(
        orjson.dumps({"type": "subscribe", "channel": channel, "since": since}).decode()
    )
    assert orjson.loads(await watcher.recv())["type"] == "subscribed"
