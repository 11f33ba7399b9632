"""``agentcast.Client`` against a scripted fake of the server's side of the native protocol:
a real ``websockets`` server on 127.0.0.1 that accepts ``?protocol=agentcast``, acks
subscribes, sends scripted frames, drops connections mid-stream and checks the ``since``
each reconnect asks for. End-to-end tests against the real server live elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvloop
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agentcast import Client, SyncClient
from agentcast.client.stream import (
    ClientError,
    ConnectionLost,
    ConnectionStatus,
    UpgradeRefused,
    backoff_delay,
)
from redis_server import free_port

WAIT = 30.0  # seconds any one expected frame may take on a loaded machine
BACKOFF = (0.001, 0.01)  # reconnects in tests are not what is waited on
TEXT = "The quick brown fox jumps over the lazy dog, then the quick brown fox sleeps."
Event = dict[str, Any]
Script = Callable[["Session"], Awaitable[None]]


def words(text: str) -> list[str]:
    """``text`` in pieces that join back to it: each word with its following space."""
    pieces = text.split(" ")
    return [piece + " " for piece in pieces[:-1]] + [pieces[-1]]


def numbered(events: list[Event], channel: str = "demo", first: int = 1) -> list[Event]:
    return [{**event, "channel": channel, "seq": seq} for seq, event in enumerate(events, first)]


def a_run(text: str = TEXT, message_id: str = "m1", run_id: str = "r1") -> list[Event]:
    """A run whose one message streams ``text`` word by word."""
    return [
        {"type": "run_start", "run_id": run_id},
        {"type": "message_start", "message_id": message_id, "role": "assistant", "kind": "text"},
        *({"type": "message_delta", "message_id": message_id, "delta": w} for w in words(text)),
        {"type": "message_end", "message_id": message_id},
        {"type": "run_end", "run_id": run_id, "outcome": "success"},
    ]


def after(history: list[Event], since: int) -> list[Event]:
    return [event for event in history if event["seq"] > since]


class Session:
    """One connection to the fake server, as its script sees it."""

    def __init__(self, server: FakeServer, connection: ServerConnection, number: int) -> None:
        self.server = server
        self.connection = connection
        self.number = number  # 1 for the first connection, 2 after one reconnect, ...

    async def frame(self) -> Event:
        frame: Event = json.loads(await asyncio.wait_for(self.connection.recv(), WAIT))
        self.server.received.append((self.number, frame))
        return frame

    async def subscribe(self) -> Event:
        """The next frame, which must be a subscribe; acked as the server does."""
        frame = await self.frame()
        assert frame["type"] == "subscribe", frame
        await self.send({"type": "subscribed", "channel": frame["channel"]})
        return frame

    async def send(self, *frames: Event) -> None:
        for frame in frames:
            await self.connection.send(json.dumps(frame))

    def drop(self) -> None:
        """End the TCP connection with no close frame (what is written still arrives)."""
        self.connection.transport.close()

    async def close(self, code: int = 1000) -> None:
        await self.connection.close(code)


class FakeServer:
    """The server's side of the native protocol, played by ``script`` on each connection."""

    def __init__(self, script: Script, token: str | None = None) -> None:
        self.script = script
        self.token = token
        self.requests: list[str] = []  # the path of every upgrade asked for
        self.received: list[tuple[int, Event]] = []  # (connection number, client frame)
        self.errors: list[BaseException] = []
        self.url = ""
        self._server: Server | None = None

    def since_asked(self) -> list[int | None]:
        """The ``since`` of every subscribe, in order (None: none asked)."""
        return [f.get("since") for _, f in self.received if f["type"] == "subscribe"]

    async def __aenter__(self) -> FakeServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._admit)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if self.errors:
            raise self.errors[0]

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request.path)
        if "protocol=agentcast" not in request.path:
            return connection.respond(400, "this fake speaks only ?protocol=agentcast\n")
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return connection.respond(401, "a valid token is required\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        session = Session(self, connection, number=len(self.requests))
        try:
            await self.script(session)
            await connection.wait_closed()
        except ConnectionClosed:
            pass  # the client left first
        except BaseException as exc:
            self.errors.append(exc)  # raised by __aexit__: a failed check in a script
            await connection.close(1000)


async def collect(client: Client) -> list[tuple[int, Event]]:
    """Every item the client yields, with the number of its connection at the time."""
    return [(client.connections, item) async for item in client]


def check_exact(items: list[tuple[int, Event]], history: list[Event]) -> None:
    """Each event of ``history`` yielded once, in order."""
    assert [event for _, event in items] == history


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_drop_mid_message_resumes_exactly_after_the_last_seq_seen(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    history = numbered(a_run())

    async def script(session: Session) -> None:
        subscribe = await session.subscribe()
        if session.number == 1:
            assert "since" not in subscribe  # a first subscribe joins live
            await session.send(*history[:7])
            session.drop()
        else:
            await session.send(*after(history, subscribe["since"]))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", backoff=BACKOFF) as client:
                items = await collect(client)
            assert server.since_asked() == [None, 7]
            assert all("protocol=agentcast" in path for path in server.requests)
            check_exact(items, history)
            assert [number for number, _ in items] == [1] * 7 + [2] * (len(history) - 7)
            assert client.messages == {"m1": TEXT}
            assert client.last_seq == {"demo": history[-1]["seq"]}
            assert client.runs == {"demo": None}  # ended
            assert client.connections == 2 and client.closed

    run(main())


def test_an_overlapping_replay_yields_nothing_twice() -> None:
    """A replay that starts before the ``since`` asked for: what was seen is dropped."""
    history = numbered(a_run())

    async def script(session: Session) -> None:
        subscribe = await session.subscribe()
        if session.number == 1:
            await session.send(*history[:9])
            session.drop()
        else:
            await session.send(*after(history, subscribe["since"] - 5))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", backoff=BACKOFF) as client:
                open_run_seen = []
                items = []
                async for event in client:
                    items.append((client.connections, event))
                    open_run_seen.append(client.runs["demo"] is not None)
            assert server.since_asked() == [None, 9]
            check_exact(items, history)
            assert client.messages == {"m1": TEXT}
            assert open_run_seen == [True] * (len(history) - 1) + [False]

    asyncio.run(main())


def test_merged_deltas_are_assembled_and_counted_by_their_last_seq() -> None:
    arguments = '{"query": "weather in Paris", "units": "metric"}'
    history = [
        {"type": "run_start", "run_id": "r1", "channel": "demo", "seq": 1},
        {
            "type": "message_start",
            "message_id": "m1",
            "role": "assistant",
            "kind": "text",
            "channel": "demo",
            "seq": 2,
        },
        # a slow watcher's deltas 3..6 merged by the server
        {
            "type": "message_delta",
            "message_id": "m1",
            "delta": "The quick brown ",
            "channel": "demo",
            "seq": 6,
            "from_seq": 3,
        },
        {"type": "message_delta", "message_id": "m1", "delta": "fox", "channel": "demo", "seq": 7},
        {"type": "message_end", "message_id": "m1", "channel": "demo", "seq": 8},
        {
            "type": "tool_call_start",
            "tool_call_id": "t1",
            "name": "search",
            "parent_message_id": "m1",
            "channel": "demo",
            "seq": 9,
        },
        {
            "type": "tool_call_delta",
            "tool_call_id": "t1",
            "delta": arguments[:20],
            "channel": "demo",
            "seq": 12,
            "from_seq": 10,
        },
        {
            "type": "tool_call_delta",
            "tool_call_id": "t1",
            "delta": arguments[20:],
            "channel": "demo",
            "seq": 15,
            "from_seq": 13,
        },
        {"type": "tool_call_end", "tool_call_id": "t1", "channel": "demo", "seq": 16},
        {
            "type": "tool_result",
            "tool_call_id": "t1",
            "content": "18 C",
            "channel": "demo",
            "seq": 17,
        },
        {"type": "run_end", "run_id": "r1", "outcome": "success", "channel": "demo", "seq": 18},
    ]

    async def script(session: Session) -> None:
        subscribe = await session.subscribe()
        if session.number == 1:
            await session.send(*history[:3])  # up to the merged delta
            session.drop()
        elif session.number == 2:
            await session.send(*after(history, subscribe["since"])[:4])  # into the tool call
            session.drop()
        else:
            await session.send(*after(history, subscribe["since"]))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", backoff=BACKOFF) as client:
                items = await collect(client)
            assert server.since_asked() == [None, 6, 12]
            check_exact(items, history)
            assert client.messages == {"m1": "The quick brown fox"}
            assert client.tool_calls == {
                "t1": {"name": "search", "arguments": arguments, "result": "18 C"}
            }
            assert json.loads(client.tool_calls["t1"]["arguments"])["units"] == "metric"

    asyncio.run(main())


def test_channel_restarted_counts_again_from_one() -> None:
    before = numbered(a_run("old numbering", message_id="m1", run_id="r1"))
    anew = numbered(
        [
            {"type": "run_start", "run_id": "r2"},
            {
                "type": "message",
                "message_id": "m2",
                "role": "assistant",
                "kind": "text",
                "content": "whole",
            },
            {"type": "custom", "name": "mood", "value": "calm"},
            {"type": "run_end", "run_id": "r2", "outcome": "success"},
        ]
    )
    restarted = {
        "type": "server_error",
        "code": "channel_restarted",
        "channel": "demo",
        "message": "numbering starts again at 1",
        "first_seq": 1,
        "restarted": True,
    }

    async def script(session: Session) -> None:
        subscribe = await session.subscribe()
        if session.number == 1:
            await session.send(*before, restarted, *anew[:2])
            session.drop()
        else:
            await session.send(*after(anew, subscribe["since"]))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, "demo", backoff=BACKOFF, notices=True) as client:
                items = await collect(client)
            assert server.since_asked() == [None, 2]  # the new numbering's last seq
            assert [item for _, item in items] == [*before, restarted, *anew]
            assert client.last_seq == {"demo": len(anew)}
            assert client.messages == {"m1": "old numbering", "m2": "whole"}
            assert list(client.notices) == [restarted]

    asyncio.run(main())


def test_history_trimmed_then_a_snapshot_restates_the_open_message() -> None:
    """A resume older than the history kept: the server restates the open run (its seqs
    kept, the message's text so far in one merged delta), and nothing is doubled."""
    history = numbered(a_run())
    last = history[-1]["seq"]
    trimmed = {
        "type": "server_error",
        "code": "history_trimmed",
        "channel": "demo",
        "since": 4,
        "first_seq": 9,
        "last_seq": 11,
        "message": "no longer kept",
    }
    snapshot_text = "".join(words(TEXT)[:9])  # deltas at seqs 3..11
    snapshot = [
        history[0],  # run_start, seq 1
        history[1],  # message_start, seq 2
        {
            "type": "message_delta",
            "message_id": "m1",
            "delta": snapshot_text,
            "channel": "demo",
            "seq": 11,
            "from_seq": 3,
        },
    ]

    async def script(session: Session) -> None:
        subscribe = await session.subscribe()
        if session.number == 1:
            await session.send(*history[:4])
            session.drop()
        else:
            assert subscribe["since"] == 4
            await session.send(trimmed, *snapshot, *after(history, 11))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", backoff=BACKOFF) as client:
                items = await collect(client)
            assert client.messages == {"m1": TEXT}
            assert list(client.notices) == [trimmed]  # kept, not yielded by default
            yielded = [event for _, event in items]
            assert yielded == [*history[:4], *snapshot, *after(history, 11)]
            assert client.last_seq == {"demo": last}

    asyncio.run(main())


def test_skipped_resumes_on_a_new_connection_in_order() -> None:
    """The server skipped 5..9 of a slow client: a new connection resuming after 4 gets
    them before the tail, so the text assembles in order."""
    history = numbered(a_run())
    skipped = {
        "type": "server_error",
        "code": "skipped",
        "skipped": 5,
        "message": "behind",
        "ranges": [{"agent_id": "demo", "from_seq": 5, "to_seq": 9}],
    }

    async def script(session: Session) -> None:
        subscribe = await session.subscribe()
        if session.number == 1:
            await session.send(*history[:4], skipped, *after(history, 9))
            await session.connection.wait_closed()  # the client leaves on the notice
        else:
            await session.send(*after(history, subscribe["since"]))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", backoff=BACKOFF) as client:
                items = await collect(client)
            assert server.since_asked() == [None, 4]
            check_exact(items, history)
            assert client.messages == {"m1": TEXT}

    asyncio.run(main())


def test_every_channel_resumes_after_its_own_last_seq() -> None:
    runs = {
        "a": numbered(a_run("alpha stream text", "ma", "ra"), channel="a"),
        "b": numbered(a_run("beta", "mb", "rb"), channel="b", first=40),
    }

    async def script(session: Session) -> None:
        subscribes = [await session.subscribe(), await session.subscribe()]
        if session.number == 1:
            await session.send(runs["a"][0], runs["b"][0], runs["a"][1])
            session.drop()
        else:
            for subscribe in subscribes:
                await session.send(*after(runs[subscribe["channel"]], subscribe["since"]))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel=["a", "b"], backoff=BACKOFF) as client:
                items = await collect(client)
            assert server.since_asked() == [None, None, 2, 40]
            by_channel = {"a": [], "b": []}  # type: dict[str, list[Event]]
            for _, event in items:
                by_channel[event["channel"]].append(event)
            assert by_channel == runs
            assert client.messages == {"ma": "alpha stream text", "mb": "beta"}
            with pytest.raises(ValueError, match="which channel"):
                await client.send("hello")

    asyncio.run(main())


def test_a_clean_close_ends_the_iteration_without_reconnecting() -> None:
    async def script(session: Session) -> None:
        await session.subscribe()
        await session.close(1000)

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", backoff=BACKOFF) as client:
                assert await collect(client) == []
            assert len(server.requests) == 1 and client.closed

    asyncio.run(main())


def test_send_talks_to_the_agent_and_subscriptions_change_at_run_time() -> None:
    async def script(session: Session) -> None:
        await session.subscribe()
        message = await session.frame()
        await session.send(
            {
                "type": "message",
                "message_id": "m1",
                "role": "assistant",
                "kind": "text",
                "content": f"echo {message['message']}",
                "channel": "demo",
                "seq": 1,
            }
        )
        await session.subscribe()  # "other", resuming after 5
        assert (await session.frame())["type"] == "unsubscribe"
        await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", backoff=BACKOFF) as client:
                await client.send("hello")
                event = await anext(client)
                await client.subscribe("other", since=5)
                await client.unsubscribe("demo")
                assert await collect(client) == []
            assert event["content"] == "echo hello"
            assert [frame for _, frame in server.received] == [
                {"type": "subscribe", "channel": "demo"},
                {"type": "user_message", "agent_id": "demo", "message": "hello"},
                {"type": "subscribe", "channel": "other", "since": 5},
                {"type": "unsubscribe", "channel": "demo"},
            ]
            assert client.channels == ("other",)
            with pytest.raises(ClientError, match="closed"):
                await client.send("after the end")

    asyncio.run(main())


def test_a_refused_upgrade_raises_at_once_and_says_why() -> None:
    async def script(session: Session) -> None:
        await session.subscribe()
        await session.close()

    async def main() -> None:
        async with FakeServer(script, token="secret") as server:
            with pytest.raises(UpgradeRefused, match=r"401.*wants a token") as refused:
                async with Client(server.url, channel="demo", backoff=BACKOFF):
                    pass
            assert refused.value.status == 401
            assert len(server.requests) == 1  # not retried
            with pytest.raises(UpgradeRefused, match="check the token"):
                async with Client(server.url, "demo", token="wrong", backoff=BACKOFF):
                    pass
            assert len(server.requests) == 2
            async with Client(server.url, "demo", token="secret", backoff=BACKOFF) as client:
                assert await collect(client) == []
            assert "secret" not in "".join(server.requests)  # a header, not in the URL

    asyncio.run(main())


def test_an_unreachable_server_raises_after_max_retries() -> None:
    url = f"ws://127.0.0.1:{free_port()}/"

    async def main() -> None:
        with pytest.raises(ConnectionLost, match=r"3 attempts in a row failed"):
            async with Client(url, channel="demo", backoff=BACKOFF, max_retries=2):
                pass
        with pytest.raises(ConnectionLost, match=url):
            async with Client(url, channel="demo", reconnect=False):
                pass

    asyncio.run(main())


def test_on_status_is_told_of_each_connection_and_each_failure_as_it_happens() -> None:
    """A drop is told while the client waits for the next event (a UI says "reconnecting"
    at once), a connection once it is subscribed, the last failure before the raise."""
    history = numbered(a_run())
    statuses: list[ConnectionStatus] = []

    async def script(session: Session) -> None:
        await session.subscribe()
        if session.number == 1:
            await session.send(*history[:3])
            session.drop()
        else:
            await session.send(*after(history, 3))
            await session.close()

    async def main() -> None:
        async with FakeServer(script) as server:
            client = Client(server.url, channel="demo", backoff=BACKOFF, on_status=statuses.append)
            async with client:
                assert statuses == [ConnectionStatus(True, 1, 0)]
                seen = [(len(statuses), event["seq"]) async for event in client]
        assert [(s.connected, s.connections, s.failures) for s in statuses] == [
            (True, 1, 0),
            (False, 1, 1),
            (True, 2, 1),
        ]
        assert "dropped" in statuses[1].reason
        assert isinstance(statuses[1].error, ConnectionClosed)
        assert seen[2] == (1, 3) and seen[3] == (3, 4)  # told between the 3rd and the 4th
        url = f"ws://127.0.0.1:{free_port()}/"
        failed: list[ConnectionStatus] = []
        with pytest.raises(ConnectionLost):
            async with Client(url, channel="demo", backoff=BACKOFF, max_retries=1,
                              on_status=failed.append):  # fmt: skip
                pass
        assert [(s.connected, s.failures) for s in failed] == [(False, 1), (False, 2)]
        assert all(isinstance(s.error, ConnectionRefusedError) for s in failed)

    asyncio.run(main())


def test_without_reconnect_a_drop_raises() -> None:
    history = numbered(a_run())

    async def script(session: Session) -> None:
        await session.subscribe()
        await session.send(*history[:3])
        session.drop()

    async def main() -> None:
        async with FakeServer(script) as server:
            async with Client(server.url, channel="demo", reconnect=False) as client:
                seen = []
                with pytest.raises(ConnectionLost, match="dropped"):
                    async for event in client:
                        seen.append(event)
            assert seen == history[:3] and len(server.requests) == 1

    asyncio.run(main())


def test_backoff_delay_is_full_jitter_within_a_doubling_window() -> None:
    assert backoff_delay(0, 0.1, 5.0, rand=lambda: 0.0) == 0.0
    windows = [backoff_delay(n, 0.1, 5.0, rand=lambda: 1.0) for n in range(10)]
    assert windows[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert windows[-1] == 5.0 and max(windows) == 5.0
    assert backoff_delay(10_000, 0.1, 5.0, rand=lambda: 1.0) == 5.0  # no overflow
    draws = random.Random(22)
    delays = [backoff_delay(3, 0.1, 5.0, rand=draws.random) for _ in range(1000)]
    assert all(0.0 <= delay <= 0.8 for delay in delays)
    assert min(delays) < 0.1 and max(delays) > 0.7  # spread over the window, not fixed


@pytest.mark.parametrize(
    ("url", "channel", "options", "error"),
    [
        ("http://127.0.0.1:1/", "demo", {}, "not a ws:// or wss:// URL"),
        ("ws://127.0.0.1:1/", "", {}, "non-empty string"),
        ("ws://127.0.0.1:1/", [], {}, "at least one channel"),
        ("ws://127.0.0.1:1/", "demo", {"since": -1}, "since is a seq"),
        ("ws://127.0.0.1:1/", "demo", {"since": {"demo": "3"}}, "since is a seq"),
        ("ws://127.0.0.1:1/", "demo", {"backoff": (5.0, 1.0)}, "backoff must be"),
        ("ws://127.0.0.1:1/", "demo", {"max_retries": -1}, "max_retries"),
        ("ws://127.0.0.1:1/", "demo", {"keep": 0}, "keep must be"),
    ],
)
def test_bad_arguments_are_refused_clearly(
    url: str, channel: Any, options: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        Client(url, channel, **options)
    with pytest.raises(ValueError, match=error):
        SyncClient(url, channel, **options)


@contextmanager
def served(script: Script) -> Iterator[FakeServer]:
    """A fake server on a loop thread of its own, for code that has no loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-server")
    thread.start()
    server = FakeServer(script)
    try:
        asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(WAIT)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_the_sync_client_iterates_on_a_plain_thread() -> None:
    history = numbered(a_run())

    async def script(session: Session) -> None:
        subscribe = await session.subscribe()
        if session.number == 1:
            assert (await session.frame())["message"] == "hi"
            await session.send(*history[:5])
            session.drop()
        else:
            await session.send(*after(history, subscribe["since"]))
            await session.close()

    with served(script) as server, SyncClient(server.url, "demo", backoff=BACKOFF) as client:
        client.send("hi")
        events = list(client)
        assert events == history
        assert client.messages == {"m1": TEXT}
        assert client.last_seq == {"demo": history[-1]["seq"]} and client.connections == 2
    assert server.since_asked() == [None, 5]


def test_closing_the_sync_client_ends_a_next_waiting_on_another_thread() -> None:
    history = numbered(a_run())

    async def script(session: Session) -> None:
        await session.subscribe()
        await session.send(*history[:2])
        await session.frame()  # nothing more: waits until the client leaves

    got: list[Event] = []
    two = threading.Event()

    def watch(client: SyncClient) -> None:
        for event in client:
            got.append(event)
            if len(got) == 2:
                two.set()

    with served(script) as server:
        client = SyncClient(server.url, "demo", backoff=BACKOFF).open()
        watcher = threading.Thread(target=watch, args=(client,))
        watcher.start()
        assert two.wait(WAIT)
        client.close()  # the watcher's next() is waiting on the socket
        watcher.join(WAIT)
        assert not watcher.is_alive()
        assert got == history[:2]
        with pytest.raises(ClientError, match="closed"):
            client.send("after close")
