"""The counters behind /metrics move by exactly what real traffic implies.

Every test drives a real server with real clients (websockets, raw sockets) and reads
``GET /metrics`` through ``prometheus_client``'s parser before and after.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import jwt
import orjson
import pytest
import redis
import websockets

from agentcast import Broadcaster
from agentcast.memgpt.app import AgentServer
from agentcast.serve.auth import TOKEN_EXPIRED, JWTAuthenticator
from clients import (
    memgpt_exchange,
    publish_until_a_client_is_dropped,
    raw_upgrade,
    run,
    wait_for,
    websockets_clients,
)
from redis_server import RedisServer
from test_auth import upgrade_status
from test_http import SECRET, get, metrics
from test_logs import HOSTILE_FRAMES
from test_rfc6455 import CLOSE, CONTINUATION, TEXT, RawClient, close_code, frame

AUTH_DROPS = "agentcast_dropped_clients_total{reason=auth}"


@pytest.fixture
def server_factory() -> Iterator[Callable[..., AgentServer]]:
    """Start MemGPT-protocol servers on free ports; each is stopped at the end."""
    servers: list[AgentServer] = []

    def start(**kwargs: object) -> AgentServer:
        server = AgentServer(port=0, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Scrape:
    """One /metrics read: a sample's value by name and labels (0 for one not there)."""

    def __init__(self, port: int) -> None:
        self.samples = metrics(port)

    def __call__(self, name: str) -> float:
        return self.samples.get(name, 0.0)


async def until_metric(port: int, name: str, value: float) -> None:
    """Wait until the sample ``name`` reads ``value`` (what it read if it never does)."""
    await wait_for(
        lambda: Scrape(port)(name) == value, what=lambda: f"{name} = {Scrape(port)(name)}"
    )


def test_subscriptions_follow_subscribes_unsubscribes_and_disconnects(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory()
    port = server.port

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{port}", 2) as (alice, bob):
            for client, agents in ((alice, ("a1", "a2", "a3")), (bob, ("a1", "a2"))):
                for agent in agents:
                    await memgpt_exchange(client, {"type": "subscribe", "agent_id": agent})
            await until_metric(port, "agentcast_subscriptions", 5)
            await memgpt_exchange(alice, {"type": "unsubscribe", "agent_id": "a2"})
            await memgpt_exchange(alice, {"type": "subscribe", "agent_id": "a1"})  # held already
            await until_metric(port, "agentcast_subscriptions", 4)
        await until_metric(port, "agentcast_subscriptions", 0)  # both gone with their 4

    run(scenario())


def test_a_resume_past_the_kept_history_counts_one_history_gap_served(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory(history_size=2)
    hub: Broadcaster = server.hub
    port = server.port
    for i in range(5):
        hub.publish({"type": "agent_response", "message": str(i)}, channel="a1")
    before = Scrape(port)

    async def resume(since: int) -> None:
        async with websockets_clients(f"ws://127.0.0.1:{port}", 1) as (client,):
            await memgpt_exchange(client, {"type": "subscribe", "agent_id": "a1", "since": since})

    async def scenario() -> None:
        await resume(0)  # seqs 1..3 are gone: a history_gap
        await until_metric(port, "agentcast_history_gaps_served_total", 1)
        await resume(3)  # 4 and 5 are kept: no gap
        await resume(5)  # up to date: no gap

    run(scenario())
    after = Scrape(port)
    assert after("agentcast_history_gaps_served_total") == 1
    assert after("agentcast_seq_gaps_total") == before("agentcast_seq_gaps_total") == 0


# ---- how connections end ---------------------------------------------------------


def closes(read: Scrape) -> dict[tuple[str, str], float]:
    """agentcast_closes_total by (code, closed_by), from one scrape's samples."""
    prefix = "agentcast_closes_total{closed_by="
    found = {}
    for name in read.samples:
        if name.startswith(prefix):
            closed_by, _, code = name[len(prefix) : -1].partition(",code=")
            found[code, closed_by] = read(name)
    return found


def dropped(read: Scrape) -> dict[str, float]:
    return {
        reason: read(f"agentcast_dropped_clients_total{{reason={reason}}}")
        for reason in ("slow", "rate", "size", "auth", "protocol")
    }


def close_both_ways(client: RawClient, code: int) -> int:
    """Send a close with ``code``; the code the server answers with."""
    client.send(CLOSE, code.to_bytes(2, "big"))
    answered = close_code(client.receive_close())
    client.close()
    return answered


async def until_closes(port: int, count: int) -> None:
    await wait_for(
        lambda: sum(closes(Scrape(port)).values()) == count,
        what=lambda: f"{count} closes, counted {closes(Scrape(port))}",
    )


def test_closes_are_counted_by_the_code_that_ended_each_and_who_sent_it(
    echo: Broadcaster, connect: Callable[[int], RawClient]
) -> None:
    assert close_both_ways(connect(echo.port), 1000) == 1000
    assert close_both_ways(connect(echo.port), 4000) == 4000
    connect(echo.port).close()  # no close frame either way
    refused = connect(echo.port)
    refused.send(TEXT, b"\xff")  # not UTF-8: the server fails it with 1007
    assert close_code(refused.receive_close()) == 1007
    refused.close()

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{echo.port}", 2):
            pass  # both close with 1000
        await until_closes(echo.port, 6)

    run(scenario())
    assert closes(Scrape(echo.port)) == {
        ("1000", "client"): 3,
        ("other", "client"): 1,
        ("1006", "nobody"): 1,
        ("1007", "server"): 1,
    }


def test_random_close_codes_are_one_label_and_cannot_grow_the_series(
    echo: Broadcaster, connect: Callable[[int], RawClient]
) -> None:
    codes = random.sample([c for c in range(3000, 5000) if c != 3005], 40)
    for code in codes:
        assert close_both_ways(connect(echo.port), code) == code
    run(until_closes(echo.port, len(codes)))
    assert closes(Scrape(echo.port)) == {("other", "client"): len(codes)}
    body = get(echo.port, "/metrics")[2].decode()
    assert len([line for line in body.splitlines() if line.startswith("agentcast_closes")]) == 1


# ---- dropped clients, by reason ------------------------------------------------------


def test_malformed_frames_are_protocol_errors_and_protocol_drops_whoever_finds_them(
    echo: Broadcaster, connect: Callable[[int], RawClient]
) -> None:
    for data, code, _ in HOSTILE_FRAMES:
        client = connect(echo.port)
        client.sock.sendall(data)
        assert close_code(client.receive_close()) == code, data
        client.close()
    run(until_closes(echo.port, len(HOSTILE_FRAMES)))
    read = Scrape(echo.port)
    assert read("agentcast_client_protocol_errors_total") == len(HOSTILE_FRAMES)
    assert dropped(read) == {"slow": 0, "rate": 0, "size": 0, "auth": 0, "protocol": 5}
    assert closes(read) == {("1002", "server"): 4, ("1007", "server"): 1}


def test_bad_frames_after_the_first_are_not_served_and_not_counted_again(
    echo: Broadcaster, connect: Callable[[int], RawClient]
) -> None:
    client = connect(echo.port)
    client.sock.sendall(frame(TEXT, b"hi", rsv=4) * 3 + frame(TEXT, b"\xff") * 3)
    assert close_code(client.receive_close()) == 1002
    client.close()
    run(until_closes(echo.port, 1))
    read = Scrape(echo.port)
    assert read("agentcast_client_protocol_errors_total") == 1
    assert dropped(read)["protocol"] == 1


def test_a_client_over_the_message_rate_is_a_rate_drop_not_a_protocol_error(
    hub_factory: Callable[..., Broadcaster], connect: Callable[[int], RawClient]
) -> None:
    hub = hub_factory(on_message=lambda client_id, data: None, max_message_rate=10)
    client = connect(hub.port)
    client.sock.sendall(b"".join(frame(TEXT, b"{}") for _ in range(30)))  # a burst of 10 only
    assert close_code(client.receive_close()) == 1008
    client.close()
    run(until_closes(hub.port, 1))
    read = Scrape(hub.port)
    assert dropped(read) == {"slow": 0, "rate": 1, "size": 0, "auth": 0, "protocol": 0}
    assert read("agentcast_client_protocol_errors_total") == 0


def test_a_frame_or_a_fragmented_message_over_the_size_limit_is_a_size_drop(
    hub_factory: Callable[..., Broadcaster], connect: Callable[[int], RawClient]
) -> None:
    hub = hub_factory(on_message=lambda client_id, data: None, max_message_size=1024)
    one_frame = connect(hub.port)  # picows' parser refuses the frame
    one_frame.send(TEXT, b"x" * 2000)
    fragments = connect(hub.port)  # the listener refuses the message it would make
    fragments.send(TEXT, b"x" * 600, fin=False)
    fragments.send(CONTINUATION, b"x" * 600)
    for client in (one_frame, fragments):
        assert close_code(client.receive_close()) == 1009
        client.close()
    run(until_closes(hub.port, 2))
    read = Scrape(hub.port)
    assert dropped(read) == {"slow": 0, "rate": 0, "size": 2, "auth": 0, "protocol": 0}
    assert read("agentcast_client_protocol_errors_total") == 2


def test_a_token_that_expires_is_an_auth_drop(
    server_factory: Callable[..., AgentServer],
) -> None:
    server = server_factory(authenticate=JWTAuthenticator(secret=SECRET))
    expiring = jwt.encode({"sub": "alice", "exp": int(time.time()) + 1}, SECRET, "HS256")
    # /metrics asks for a token too when authentication is on.
    lasting = jwt.encode({"sub": "ops", "exp": int(time.time()) + 300}, SECRET, "HS256")
    headers = {"Authorization": f"Bearer {lasting}"}

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{server.port}/?token={expiring}"
        async with websockets.connect(url) as websocket:
            await websocket.wait_closed()
            assert websocket.close_code == TOKEN_EXPIRED
        await wait_for(lambda: metrics(server.port, headers).get(AUTH_DROPS) == 1)

    run(scenario())
    read = metrics(server.port, headers)
    assert {k: v for k, v in read.items() if k.startswith("agentcast_dropped_clients")} == {
        f"agentcast_dropped_clients_total{{reason={reason}}}": float(reason == "auth")
        for reason in ("slow", "rate", "size", "auth", "protocol")
    }
    assert read["agentcast_tokens_expired_total"] == 1


def test_a_client_that_never_reads_is_a_slow_drop(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(client_budget=64 * 1024)
    stalled = raw_upgrade(hub.port, rcvbuf=4096)
    try:
        run(wait_for(lambda: hub.client_count == 1))
        publish_until_a_client_is_dropped(hub)
    finally:
        stalled.close()
    run(until_closes(hub.port, 1))
    read = Scrape(hub.port)
    assert dropped(read) == {"slow": 1, "rate": 0, "size": 0, "auth": 0, "protocol": 0}
    assert closes(read) == {("1013", "server"): 1}


# ---- refused upgrades and readiness -------------------------------------------------


def refused(read: Scrape) -> dict[str, float]:
    return {
        reason: read(f"agentcast_upgrades_refused_total{{reason={reason}}}")
        for reason in ("origin", "auth", "per_ip", "rate", "max_clients", "handshake")
    }


def test_upgrades_refused_when_full_or_for_the_handshake_are_counted_by_reason(
    hub_factory: Callable[..., Broadcaster], connect: Callable[[int], RawClient]
) -> None:
    hub = hub_factory(max_clients=1)
    connect(hub.port)
    run(wait_for(lambda: hub.client_count == 1))
    assert [upgrade_status(hub.port) for _ in range(3)] == [503] * 3
    assert upgrade_status(hub.port, headers={"Sec-WebSocket-Version": "8"}) == 426
    assert upgrade_status(hub.port, headers={"Sec-WebSocket-Version": ""}) == 426
    read = Scrape(hub.port)
    assert refused(read) == {
        "origin": 0,
        "auth": 0,
        "per_ip": 0,
        "rate": 0,
        "max_clients": 3,
        "handshake": 2,
    }
    assert read("agentcast_readyz_unready_total") == 0


def test_readyz_says_when_the_publisher_cannot_reach_redis_and_each_503_is_counted(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    """Pub/sub stays connected while the publisher's connection is cut and Redis takes no
    new connection (``maxclients``): only the publisher is cut off."""
    hub = hub_factory(backplane=redis_server.url)
    unready: list[bytes] = []

    def readyz() -> tuple[int, bytes]:
        status, _, body = get(hub.port, "/readyz")
        if status == 503:
            unready.append(body)
        return status, body

    async def until(status: int) -> None:
        await wait_for(lambda: readyz()[0] == status, 30, lambda: f"/readyz: {readyz()}")

    with redis.Redis.from_url(redis_server.url, single_connection_client=True) as admin:
        run(until(200))  # pub/sub may still be connecting at first
        assert set(unready) <= {b"not ready: redis unreachable\n"}
        before_the_cut = len(unready)
        admin.client_kill_filter(_type="normal", skipme=True)  # the publisher's connection
        admin.config_set("maxclients", admin.info("clients")["connected_clients"])
        try:
            hub.publish({"type": "agent_response", "message": "held"}, channel="a1")
            run(until(503))
            assert readyz() == (503, b"not ready: redis unreachable for publishing\n")
        finally:
            admin.config_set("maxclients", 10_000)
        run(until(200))
    assert set(unready[before_the_cut:]) == {b"not ready: redis unreachable for publishing\n"}
    assert Scrape(hub.port)("agentcast_readyz_unready_total") == len(unready)


# ---- publish-to-write latency ----------------------------------------------------------


def latency(read: Scrape) -> tuple[list[tuple[float, float]], float, float]:
    """(le, cumulative count) of every bucket, the sum and the count of the histogram."""
    prefix = "agentcast_publish_to_write_seconds_bucket{le="
    buckets = sorted(
        (float(name[len(prefix) : -1]), value)
        for name, value in read.samples.items()
        if name.startswith(prefix)
    )
    return (
        buckets,
        read("agentcast_publish_to_write_seconds_sum"),
        read("agentcast_publish_to_write_seconds_count"),
    )


def test_one_publish_in_64_that_reached_a_client_is_observed_in_the_latency_histogram(
    hub: Broadcaster,
) -> None:
    every = 64
    assert latency(Scrape(hub.port))[1:] == (0, 0)

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}", 1) as (client,):
            await wait_for(lambda: hub.client_count == 1)
            for n in range(10 * every):
                hub.publish({"n": n})
            for n in range(10 * every):
                assert orjson.loads(await client.recv()) == {"n": n}
            for _ in range(every):  # reaches nobody: its sample is not observed
                hub.publish({"n": -1}, channel="nobody")
            hub.publish({"n": "last"})  # applied after them
            assert orjson.loads(await client.recv()) == {"n": "last"}

    run(scenario())
    buckets, total, count = latency(Scrape(hub.port))
    assert count == 10
    assert 0 < total < 10 * 60  # seconds: stamped on a monotonic clock in ns
    bounds_us = [50, 100, 250, 500, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6]
    assert [le for le, _ in buckets] == [*(us / 1e6 for us in bounds_us), float("inf")]
    cumulative = [n for _, n in buckets]
    assert cumulative == sorted(cumulative) and cumulative[-1] == 10
