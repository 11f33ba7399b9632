"""What the tests check of an agent event stream as a client receives it, and the
native clients and hubs they use."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import orjson
import websockets

from agentcast import Broadcaster
from agentcast.streams.events import DELTA_KINDS, STREAM_ID

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


def texts(events: list[dict[str, Any]]) -> dict[str, str]:
    """Every message's and tool call's deltas concatenated, by id."""
    pieces: dict[str, list[str]] = {}
    for event in events:
        if event["type"] in DELTA_KINDS:
            pieces.setdefault(event[STREAM_ID[event["type"]]], []).append(event["delta"])
    return {stream: "".join(parts) for stream, parts in pieces.items()}


def check_covers(
    events: list[dict[str, Any]], produced: list[dict[str, Any]], first: int = 1
) -> None:
    """``events`` as a client received them are ``produced`` (the producer's events, seq 1
    first) from seq ``first`` to the end: each frame the event of its seq, or, with
    ``from_seq``, the concatenation of consecutive deltas of one id; no seq missing, none
    twice, no boundary merged."""
    expected = first
    for event in events:
        low = event.get("from_seq", event["seq"])
        assert low == expected, f"expected seq {expected}, got {low}..{event['seq']}"
        covered = produced[low - 1 : event["seq"]]
        if "from_seq" in event:
            kind, key = event["type"], STREAM_ID[event["type"]]
            assert kind in DELTA_KINDS, f"a {kind} was merged"
            assert all(e["type"] == kind and e[key] == event[key] for e in covered), (
                f"{low}..{event['seq']} merged more than deltas of {event[key]}"
            )
            assert event["delta"] == "".join(e["delta"] for e in covered)
        else:
            assert covered[0].items() <= event.items(), f"{event} is not {covered[0]}"
        expected = event["seq"] + 1
    assert expected == len(produced) + 1, f"the stream stopped at seq {expected - 1}"


def long_run(deltas: int) -> list[dict[str, Any]]:
    """A run's events in seq order: a message of ``deltas`` deltas (~110 bytes a frame), a
    tool call of a tenth as many, a second message like the first."""
    events: list[dict[str, Any]] = [{"type": "run_start", "run_id": "r"}]
    for stream, count in (("m1", deltas), ("t1", deltas // 10), ("m2", deltas)):
        if stream.startswith("m"):
            kind, key = "message", "message_id"
            start = {"type": "message_start", key: stream, "role": "assistant", "kind": "text"}
        else:
            kind, key = "tool_call", "tool_call_id"
            start = {"type": "tool_call_start", key: stream, "name": "search"}
        events.append(start)
        events.extend(
            {"type": f"{kind}_delta", key: stream, "delta": f"{stream}-{i:05} " + "x" * 100}
            for i in range(count)
        )
        events.append({"type": f"{kind}_end", key: stream})
    events.append({"type": "run_end", "run_id": "r", "outcome": "success"})
    return events


async def websockets_laggard(port: int) -> websockets.ClientConnection:
    """A websockets client of the native protocol on a socket with a 4 KiB receive buffer,
    set before it connects: while nothing calls ``recv`` it reads a few frames (``max_queue``)
    and then nothing, so the server's transport fills and it lags."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(("127.0.0.1", port))
        return await websockets.connect(
            f"ws://127.0.0.1:{port}/{NATIVE}", sock=sock, max_size=None, max_queue=4
        )
    except BaseException:
        sock.close()
        raise


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
