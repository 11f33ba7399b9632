"""Server-sent events on the WebSocket port: ``/sse/{channel}`` streams with ``id: <seq>``,
resume by ``Last-Event-ID``, a join mid-run, the slow-reader policy, the AI SDK's resume
endpoint, refusals, and the connection taken from picows at the admission layer."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from agentcast import Broadcaster
from agentcast.serve.auth import JWTAuthenticator
from clients import run, wait_for
from sse_checks import events_until, parse_sse, raw_get, read_all, read_until, sse_stream
from stream_checks import check_stream, text
from tls_certificates import issue

SECRET = "sse-test-secret-of-32-bytes-at-least"


def subscribed(hub: Broadcaster, count: int = 1) -> None:
    run(wait_for(lambda: hub.stats().get("subscriptions") == count, what="the subscription"))


def stream_run(hub: Broadcaster, channel: str, words: list[str]) -> str:
    """A run with one assistant message of ``words``; its message id."""
    with hub.run(channel) as agent_run:
        with agent_run.message(role="assistant") as message:
            for word in words:
                message.delta(word)
        return message.id


def test_a_watcher_gets_each_event_with_its_seq_as_id(hub: Broadcaster) -> None:
    with sse_stream(hub.port, "/sse/a") as (response, source):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        subscribed(hub)
        message_id = stream_run(hub, "a", ["Hel", "lo"])
        got = events_until(source, "run_end")
    events = [event for _, event in got]
    check_stream(events)
    assert [sse_id for sse_id, _ in got] == [str(event["seq"]) for event in events]
    assert text(events, message_id) == "Hello"
    assert {event["channel"] for event in events} == {"a"}


@pytest.mark.parametrize("transport", ["aiofastnet", "uvloop"])
def test_a_stream_over_tls_is_taken_over_as_in_plain_text(
    hub_factory: Callable[..., Broadcaster], tmp_path: Path, transport: str
) -> None:
    certificates = issue(tmp_path)
    hub = hub_factory(ssl=certificates.server(), transport=transport)
    with sse_stream(hub.port, "/sse/a", tls=certificates.client()) as (response, source):
        assert response.status_code == 200
        subscribed(hub)
        message_id = stream_run(hub, "a", ["over ", "TLS"])
        got = [event for _, event in events_until(source, "run_end")]
    check_stream(got)
    assert text(got, message_id) == "over TLS"


def test_last_event_id_resumes_without_gap_or_duplicate(hub: Broadcaster) -> None:
    with sse_stream(hub.port, "/sse/a") as (_, source):
        subscribed(hub)
        message_id = stream_run(hub, "a", ["one ", "two ", "three"])
        first = events_until(source, "message_delta")
    subscribed(hub, 0)
    last_id = first[-1][0]
    with sse_stream(hub.port, "/sse/a", {"Last-Event-ID": last_id}) as (_, source):
        rest = events_until(source, "run_end")
    seqs = [event["seq"] for _, event in first + rest]
    assert seqs == list(range(1, seqs[-1] + 1))
    assert text([e for _, e in first + rest], message_id) == "one two three"


def test_a_watcher_joining_mid_run_gets_the_open_run_first(hub: Broadcaster) -> None:
    with hub.run("a") as agent_run:
        message = agent_run.message(role="assistant")
        message.delta("already ")
        message.delta("said, ")
        run(wait_for(lambda: (hub.channel_info("a") or {}).get("last_seq") == 4))
        with sse_stream(hub.port, "/sse/a?protocol=agentcast") as (_, source):
            subscribed(hub)
            message.delta("and more")
            message.end()
            agent_run.end()
            got = [event for _, event in events_until(source, "run_end")]
    check_stream(got)  # valid from its first frame: run_start, message_start, merged text
    assert [e["type"] for e in got[:3]] == ["run_start", "message_start", "message_delta"]
    assert got[2]["delta"] == "already said, " and got[2]["from_seq"] == 3
    assert text(got, message.id) == "already said, and more"


def test_acks_are_comments_and_plain_messages_do_not_reach_sse(hub: Broadcaster) -> None:
    sock = raw_get(hub.port, "/sse/a")
    try:
        subscribed(hub)
        hub.publish_json(b'{"type":"plain"}', channel="a")  # a WebSocket client's only
        hub.publish({"type": "broadcast"})
        stream_run(hub, "a", ["x"])
        body = read_until(sock, b'"run_end"')
    finally:
        sock.close()
    head, _, stream = body.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    events, comments = parse_sse(stream)
    assert comments[0] == b'{"type":"subscribed","channel":"a"}'
    kinds = [orjson.loads(data)["type"] for _, data in events]
    assert kinds == ["run_start", "message_start", "message_delta", "message_end", "run_end"]


def test_an_idle_stream_gets_heartbeat_comments(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(ping_interval=0.05, ping_timeout=0.05)
    sock = raw_get(hub.port, "/sse/a")
    try:
        body = read_until(sock, b": ping\n\n: ping\n\n")  # two beats: it repeats
    finally:
        sock.close()
    events, comments = parse_sse(body.partition(b"\r\n\r\n")[2])
    assert events == [] and comments.count(b"ping") >= 2


def test_a_closed_stream_leaves_no_client_behind(hub: Broadcaster) -> None:
    sock = raw_get(hub.port, "/sse/a")
    subscribed(hub)
    assert hub.stats()["sse_streams"] == 1 and hub.client_count == 1
    sock.close()
    run(wait_for(lambda: hub.client_count == 0 and hub.stats()["sse_streams"] == 0))
    assert hub.stats()["subscriptions"] == 0 and hub.stats()["connections"] == 0


def test_a_request_head_in_pieces_is_taken_whole(hub: Broadcaster) -> None:
    sock = socket.create_connection(("127.0.0.1", hub.port))
    try:
        for piece in (b"GE", b"T /s", b"se/a HTTP/1.1\r\nHo", b"st: x\r\n", b"\r\n"):
            sock.sendall(piece)
            run(wait_for(lambda: True))  # a loop turn: each piece its own read, likely
        subscribed(hub)
        stream_run(hub, "a", ["x"])
        body = read_until(sock, b'"run_end"')
    finally:
        sock.close()
    assert body.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_head_over_16_kib_is_answered_431(hub: Broadcaster) -> None:
    sock = raw_get(hub.port, "/sse/a", "X-Pad: " + "p" * 17000 + "\r\n")
    try:
        assert read_all(sock).startswith(b"HTTP/1.1 431 ")
    finally:
        sock.close()
    assert hub.stats()["upgrades_refused_head_size"] == 1


@pytest.mark.parametrize(
    ("path", "headers", "status", "says"),
    [
        ("/sse/a?protocol=memgpt", "", 400, b"unknown protocol 'memgpt'"),
        ("/sse/a?protocol=x", "", 400, b"one of agentcast, agui, aisdk, letta"),
        ("/sse/a?since=-1", "", 400, b"must be a seq"),
        ("/sse/a", "Last-Event-ID: 1e9\r\n", 400, b"must be a seq"),
        ("/sse/a?since=%C2%B2", "", 400, b"must be a seq"),  # "²" is a digit to str.isdigit
        ("/sse/a?since=%D9%A1", "", 400, b"must be a seq"),  # an Arabic-Indic 1 is no seq
        ("/sse/a?protocol=agui&protocol=letta", "", 400, b"unknown protocol 'agui, letta'"),
        ("/sse/a?since=1&since=5", "", 400, b"must be a seq, not '1, 5'"),
        ("/sse/a", "Last-Event-ID: 1\r\nLast-Event-ID: 7\r\n", 400, b"not '1, 7'"),
        ("/sse/", "", 404, b"name one channel"),
        ("/sse/a/b", "", 404, b"name one channel"),
        ("/sse/%ff", "", 400, b"UTF-8, percent-encoded"),  # no 500, no traceback logged
        ("/api/chat/%ff/stream", "", 400, b"UTF-8, percent-encoded"),
        ("/sse/a%00b", "", 400, b"of printable characters"),
        ("/sse/" + "x" * 257, "", 400, b"at most 256 bytes"),
        ("/sse/a", "Origin: https://evil.example\r\n", 403, b"origin not allowed"),
        ("/sse/a", "Host: y\r\n", 400, b"exactly one Host header"),
    ],
)
def test_bad_requests_get_a_clear_answer_and_the_server_serves_on(
    hub: Broadcaster, path: str, headers: str, status: int, says: bytes
) -> None:
    sock = raw_get(hub.port, path, headers)
    try:
        answer = read_all(sock)
    finally:
        sock.close()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert says in answer
    with sse_stream(hub.port, "/sse/a") as (response, _):
        assert response.status_code == 200


def test_max_clients_counts_sse_streams(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(max_clients=1)
    first = raw_get(hub.port, "/sse/a")
    try:
        subscribed(hub)
        second = raw_get(hub.port, "/sse/a")
        assert read_all(second).startswith(b"HTTP/1.1 503 ")
        second.close()
    finally:
        first.close()


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "u", **claims}, SECRET, algorithm="HS256")


def test_a_token_is_required_and_must_allow_the_channel(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(authenticate=JWTAuthenticator(secret=SECRET))
    answers = []
    for path, headers in [
        ("/sse/a", ""),
        (f"/sse/a?token={token(watch=['b*'])}", ""),
        ("/sse/a", f"Authorization: Bearer {token(watch=['b*'])}\r\n"),
    ]:
        sock = raw_get(hub.port, path, headers)
        answers.append(read_all(sock).split(b"\r\n", 1)[0])
        sock.close()
    assert answers == [
        b"HTTP/1.1 401 Unauthorized",
        b"HTTP/1.1 403 Forbidden",
        b"HTTP/1.1 403 Forbidden",
    ]
    with sse_stream(hub.port, f"/sse/a?token={token(watch=['a'])}") as (_, source):
        subscribed(hub)
        message_id = stream_run(hub, "a", ["ok"])
        assert text([e for _, e in events_until(source, "run_end")], message_id) == "ok"


def test_a_stalled_reader_gets_merged_deltas_and_the_same_text(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(lag_threshold=4096, notsent_lowat=4096)  # the kernel holds little
    sock = raw_get(hub.port, "/sse/a", rcvbuf=4096)
    words = [f"w{i:05d} " for i in range(20_000)]
    try:
        subscribed(hub)
        message_id = stream_run(hub, "a", words)
        run(wait_for(lambda: hub.stats()["merged_deltas"] > 0, what="a merge"))
        body = read_until(sock, b'"run_end"')
    finally:
        sock.close()
    events = [orjson.loads(data) for _, data in parse_sse(body.partition(b"\r\n\r\n")[2])[0]]
    check_stream(events)
    assert text(events, message_id) == "".join(words)
    merged = [e for e in events if "from_seq" in e]
    assert merged, "nothing was merged"
    covered = sum(e["seq"] - e.get("from_seq", e["seq"]) + 1 for e in events)
    assert covered == events[-1]["seq"]  # every seq once: no gap, no duplicate


def test_the_resume_endpoint_says_204_without_an_open_run(hub: Broadcaster) -> None:
    stream_run(hub, "chat-1", ["done before"])
    sock = raw_get(hub.port, "/api/chat/chat-1/stream")
    try:
        answer = read_all(sock)
    finally:
        sock.close()
    assert answer == b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


def test_the_resume_endpoint_replays_the_open_run_and_closes_after_it(hub: Broadcaster) -> None:
    with hub.run("chat-1") as agent_run:
        message = agent_run.message(role="assistant")
        message.delta("Hel")
        run(wait_for(lambda: (hub.channel_info("chat-1") or {}).get("last_seq") == 3))
        sock = raw_get(hub.port, "/api/chat/chat-1/stream")
        try:
            subscribed(hub)
            message.delta("lo")
            message.end()
        except BaseException:
            sock.close()
            raise
    stream_run(hub, "chat-1", ["after"])  # the next run: not this stream's
    try:
        body = read_all(sock)  # the server closes after [DONE]
    finally:
        sock.close()
    head, _, stream = body.partition(b"\r\n\r\n")
    assert b"\r\nx-vercel-ai-ui-message-stream: v1\r\n" in head + b"\r\n"
    events, _ = parse_sse(stream)
    chunks = [data for _, data in events]
    assert chunks[-1] == b"[DONE]"
    parsed = [orjson.loads(chunk) for chunk in chunks[:-1]]
    assert parsed[0]["type"] == "start"
    assert "".join(c["delta"] for c in parsed if c["type"] == "text-delta") == "Hello"
    assert all("seq" not in chunk for chunk in parsed)  # only in the id: lines
    assert b"after" not in stream


def test_the_resume_endpoints_path_is_settable(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(chat_api="/v1/chats/")
    answers = []
    for path in ("/v1/chats/c/stream", "/api/chat/c/stream"):
        sock = raw_get(hub.port, path)
        answers.append(read_all(sock).split(b"\r\n", 1)[0])
        sock.close()
    # the old path is not ours any more
    assert answers == [b"HTTP/1.1 204 No Content", b"HTTP/1.1 404 Not Found"]
    for bad in ("api/chat", "/sse", "/a?b", ""):
        with pytest.raises(ValueError, match="chat_api must be a path such as /api/chat"):
            Broadcaster(chat_api=bad)
