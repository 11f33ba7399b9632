"""GET /healthz, /readyz and /metrics on the WebSocket port, over real sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import jwt
import orjson
import pytest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from agentcast import Broadcaster
from agentcast.serve.auth import JWTAuthenticator
from clients import run, wait_for, websockets_clients
from redis_server import RedisServer

SECRET = b"s" * 32


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Status, Content-Type and body of a plain GET (error statuses included)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


def metrics(port: int, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Every sample of GET /metrics by name (labels joined in), parsed by prometheus_client."""
    status, content_type, body = get(port, "/metrics", headers)
    assert status == 200, body
    assert content_type.startswith("text/plain; version=")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


def test_healthz_answers_ok(hub: Broadcaster) -> None:
    assert get(hub.port, "/healthz") == (200, "text/plain; charset=utf-8", b"ok\n")


def test_readyz_is_ready_without_a_backplane(hub: Broadcaster) -> None:
    assert get(hub.port, "/readyz")[::2] == (200, b"ready\n")


def test_other_paths_without_an_upgrade_are_not_found(hub: Broadcaster) -> None:
    assert get(hub.port, "/elsewhere") == (404, "text/plain; charset=utf-8", b"not found\n")
    # an upgrade that went wrong is still picows' 400
    status, _, body = get(hub.port, "/elsewhere", {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert status == 400 and b"UPGRADE" in body.upper()


def test_readyz_follows_the_redis_connection(
    redis_server: RedisServer, hub_factory: Callable[..., Broadcaster]
) -> None:
    hub = hub_factory(backplane=redis_server.url)

    def readyz() -> tuple[int, bytes]:
        status, _, body = get(hub.port, "/readyz")
        return status, body

    async def until(status: int) -> None:
        await wait_for(lambda: readyz()[0] == status, what=lambda: f"/readyz: {readyz()}")

    run(until(200))
    redis_server.stop()
    run(until(503))
    assert readyz() == (503, b"not ready: redis unreachable\n")
    redis_server.start()
    run(until(200))
    assert readyz() == (200, b"ready\n")


def test_metrics_counters_move_with_traffic(hub: Broadcaster) -> None:
    before = metrics(hub.port)
    assert before["agentcast_clients"] == 0
    messages, clients = 5, 3
    url = f"ws://127.0.0.1:{hub.port}/"

    async def scenario() -> None:
        async with websockets_clients(url, clients) as connections:
            await wait_for(lambda: hub.client_count == clients)
            assert metrics(hub.port)["agentcast_clients"] == clients
            for n in range(messages):
                hub.publish({"n": n})
            for connection in connections:
                for n in range(messages):
                    assert orjson.loads(await connection.recv())["n"] == n

    run(scenario())
    after = metrics(hub.port)
    assert after["agentcast_published_total"] - before["agentcast_published_total"] == messages
    grown = after["agentcast_deliveries_total"] - before["agentcast_deliveries_total"]
    assert grown == messages * clients
    assert after["agentcast_sent_bytes_total"] > before["agentcast_sent_bytes_total"]
    assert after["agentcast_write_calls_total"] > before["agentcast_write_calls_total"]
    assert after["agentcast_upgrades_refused_total{reason=origin}"] == 0


def test_metrics_needs_a_token_when_authentication_is_on(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(authenticate=JWTAuthenticator(secret=SECRET))
    status, _, _ = get(hub.port, "/metrics")
    assert status == 401
    good = jwt.encode({"sub": "prometheus", "exp": int(time.time()) + 300}, SECRET, "HS256")
    samples = metrics(hub.port, {"Authorization": f"Bearer {good}"})
    assert samples["agentcast_upgrades_refused_total{reason=auth}"] == 1
    assert get(hub.port, "/healthz")[0] == 200
    assert get(hub.port, "/readyz")[0] == 200


class _Failing(Collector):
    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("secret detail")


def test_a_failing_collector_is_a_generic_500(
    hub: Broadcaster, caplog: pytest.LogCaptureFixture
) -> None:
    hub.metrics_registry.register(_Failing())
    status, _, body = get(hub.port, "/metrics")
    assert (status, body) == (500, b"internal error\n")
    assert "GET /metrics failed" in caplog.text
    assert get(hub.port, "/healthz")[0] == 200


def test_a_websocket_client_still_connects_on_the_same_port(hub: Broadcaster) -> None:
    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{hub.port}/healthz", 1) as [connection]:
            await wait_for(lambda: hub.client_count == 1)
            hub.publish({"hello": 1})
            assert orjson.loads(await connection.recv()) == {"hello": 1}

    run(scenario())


def test_a_metrics_port_listens_on_loopback_and_asks_the_token_when_authenticating(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(host="0.0.0.0", authenticate=JWTAuthenticator(secret=SECRET), metrics_port=0)
    with pytest.raises(ConnectionRefusedError):  # 127.0.0.2 reaches 0.0.0.0, not 127.0.0.1
        socket.create_connection(("127.0.0.2", hub.metrics_port), timeout=10).close()
    assert get(hub.metrics_port, "/healthz")[::2] == (200, b"ok\n")
    assert get(hub.metrics_port, "/readyz")[::2] == (200, b"ready\n")
    assert get(hub.metrics_port, "/metrics")[0] == 401
    good = jwt.encode({"sub": "prometheus", "exp": int(time.time()) + 300}, SECRET, "HS256")
    samples = metrics(hub.metrics_port, {"Authorization": f"Bearer {good}"})
    assert samples["agentcast_upgrades_refused_total{reason=auth}"] == 1
    assert get(hub.metrics_port, "/elsewhere")[0] == 404
    for path in ("/healthz", "/metrics"):  # not served on the WebSocket port, token or not
        assert get(hub.port, path)[0] == 404
        assert get(hub.port, path, {"Authorization": f"Bearer {good}"})[0] == 404


def test_a_metrics_port_binds_the_metrics_host_it_is_given(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(metrics_port=0, metrics_host="0.0.0.0")
    socket.create_connection(("127.0.0.2", hub.metrics_port), timeout=10).close()
    assert get(hub.metrics_port, "/metrics")[0] == 200  # open: no authentication


@pytest.mark.parametrize("on_metrics_port", [False, True], ids=["ws-port", "metrics-port"])
def test_without_authentication_state_is_read_by_ip_or_localhost_hosts_only(
    hub_factory: Callable[..., Broadcaster], on_metrics_port: bool
) -> None:
    """A page on evil.example rebound to 127.0.0.1 sends Host: evil.example: refused."""
    hub = hub_factory(metrics_port=0 if on_metrics_port else None)
    port = hub.metrics_port if on_metrics_port else hub.port
    paths = ["/metrics"] if on_metrics_port else ["/metrics", "/status"]
    for path in paths:
        for host in ("evil.example", f"evil.example:{port}", "", "[", "127.0.0.1.evil.example"):
            assert get(port, path, {"Host": host})[0] == 403, (path, host)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", "127.0.0.1"):
            assert get(port, path, {"Host": host})[0] == 200, (path, host)
    assert hub.stats()["host_refused"] == 5 * len(paths)
    assert get(port, "/healthz", {"Host": "evil.example"})[0] == 200  # says nothing


def test_a_dns_host_reads_state_when_allowed_or_with_authentication(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    allowed = hub_factory(allowed_origins=["http://agents.example:*"])
    assert get(allowed.port, "/metrics", {"Host": f"agents.example:{allowed.port}"})[0] == 200
    assert get(allowed.port, "/metrics", {"Host": "other.example"})[0] == 403
    authenticated = hub_factory(authenticate=JWTAuthenticator(secret=SECRET))
    good = jwt.encode({"sub": "prometheus", "exp": int(time.time()) + 300}, SECRET, "HS256")
    named = {"Host": "agents.example", "Authorization": f"Bearer {good}"}
    assert get(authenticated.port, "/metrics", named)[0] == 200


def test_behind_a_tls_proxy_the_allowed_https_origin_names_its_host(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    """nginx serves https://agents.example and passes Host: agents.example to a plain
    server: the live page's /status read passes, as its WebSocket's Origin does."""
    hub = hub_factory(allowed_origins=["https://agents.example"])
    assert get(hub.port, "/status", {"Host": "agents.example"})[0] == 200
    assert get(hub.port, "/status", {"Host": "agents.example:443"})[0] == 200
    assert get(hub.port, "/status", {"Host": "other.example"})[0] == 403


def test_the_metrics_port_answers_garbage_and_keeps_serving(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(metrics_port=0)
    cases = {
        b"NONSENSE\r\n\r\n": b"HTTP/1.1 400 ",
        b"POST /metrics HTTP/1.1\r\n\r\n": b"HTTP/1.1 405 ",
        b"x" * 20000: b"HTTP/1.1 431 ",  # over the head limit, answered before it is read
        b"GET / HTTP/1.1\r\nX: " + b"x" * 20000 + b"\r\n\r\n": b"HTTP/1.1 431 ",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03": b"HTTP/1.1 400 ",  # an https:// scrape
    }
    for garbage, status_line in cases.items():
        with socket.create_connection(("127.0.0.1", hub.metrics_port), timeout=10) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(4096)
        assert answer.startswith(status_line), (garbage[:20], answer)
    assert get(hub.metrics_port, "/healthz")[0] == 200


def test_the_metrics_port_is_refused_with_several_workers() -> None:
    argv = ["serve", "--workers", "2", "--redis", "redis://127.0.0.1:1/0", "--port", "1"]
    command = [sys.executable, "-m", "agentcast", *argv, "--metrics-port", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--metrics-port serves one process" in done.stderr
