"""Per-IP connection limits, decided at TCP accept: a cap on open connections and on new
connections a second, counted in stats. Over ws:// a refused client is answered HTTP 503
(the cap) or 429 (the rate); over wss:// it is closed at once, before any TLS work. One
deadline from accept covers the TLS handshake and the upgrade. Clients from other
addresses (127.0.0.2 is loopback too) are served throughout; IPv6 peers count per /64."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets

from agentcast.memgpt.app import AgentServer
from agentcast.serve.admission import ConnectionAdmission, peer_key
from clients import DEMO_STEP, memgpt_exchange, run, user_message, wait_for
from serve_cli import AGENTCAST, serving
from tls_certificates import Certificates, issue

OTHER_IP = "127.0.0.2"
# A TLS record header announcing a 512-byte ClientHello, and its first bytes only.
PARTIAL_CLIENT_HELLO = bytes.fromhex("160301020001000200fc0303") + b"\x00" * 16
CLOSED = "closed before TLS"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue(tmp_path_factory.mktemp("tls"))


@dataclass(frozen=True)
class Scheme:
    """ws:// or wss:// (a trustme certificate): a server's settings and how clients reach it."""

    name: str
    server_ssl: ssl.SSLContext | None
    client_ssl: ssl.SSLContext | None

    def url(self, port: int, host: str = "127.0.0.1") -> str:
        return f"{self.name}://{host}:{port}"

    def connect(self, url: str, local_ip: str | None = None, **options: Any) -> Any:
        local = None if local_ip is None else (local_ip, 0)
        return websockets.connect(url, ssl=self.client_ssl, local_addr=local, **options)

    def refused(self, status: int) -> int | str:
        """What a refused client sees: the HTTP status over ws://, a closed socket over wss://."""
        return status if self.client_ssl is None else CLOSED

    async def refusal(self, url: str) -> int | str:
        if self.client_ssl is None:
            with pytest.raises(websockets.InvalidStatus) as refused:
                await self.connect(url)
            return int(refused.value.response.status_code)
        with pytest.raises(OSError):  # EOF or reset in the TLS handshake
            await self.connect(url)
        return CLOSED


PLAIN = Scheme("ws", None, None)


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest, certificates: Certificates) -> Scheme:
    if request.param == "ws":
        return PLAIN
    return Scheme("wss", certificates.server(), certificates.client())


async def _served(scheme: Scheme, url: str, local_ip: str = "127.0.0.1") -> None:
    async with scheme.connect(url, local_ip) as control:
        assert [r["type"] for r in await memgpt_exchange(control, user_message("hi"))] == DEMO_STEP


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
def test_connections_beyond_the_per_ip_cap_are_refused_and_a_closed_one_frees_its_slot(
    scheme: Scheme, transport: str
) -> None:
    with AgentServer(
        port=0, max_connections_per_ip=3, transport=transport, ssl=scheme.server_ssl
    ) as server:
        url = scheme.url(server.port)

        async def scenario() -> None:
            first = await scheme.connect(url)
            async with scheme.connect(url), scheme.connect(url):
                assert await scheme.refusal(url) == scheme.refused(503)
                assert await scheme.refusal(url) == scheme.refused(503)
                await _served(scheme, url, OTHER_IP)  # another address has slots of its own
                assert [r["type"] for r in await memgpt_exchange(first, user_message("hi"))] == (
                    DEMO_STEP
                )
                await first.close()
                await wait_for(lambda: server.hub.stats()["connections"] == 2, what="released")
                await _served(scheme, url)  # the slot it held is free
            await wait_for(lambda: server.hub.stats()["connections"] == 0, what="all released")

        run(scenario())
        stats = server.hub.stats()
        assert stats["connections_refused_per_ip"] == 2
        assert stats["connections_refused_rate"] == 0
        assert stats["connection_ips"] == 0


def test_a_connection_that_never_upgrades_holds_a_slot_until_it_goes(scheme: Scheme) -> None:
    with AgentServer(port=0, max_connections_per_ip=1, ssl=scheme.server_ssl) as server:
        url = scheme.url(server.port)

        async def scenario() -> None:
            with socket.create_connection(("127.0.0.1", server.port)):  # nothing sent
                await wait_for(lambda: server.hub.stats()["connections"] == 1, what="counted")
                assert await scheme.refusal(url) == scheme.refused(503)
            await wait_for(lambda: server.hub.stats()["connections"] == 0, what="released")
            await _served(scheme, url)

        run(scenario())


def test_a_connect_burst_over_the_rate_is_refused(scheme: Scheme) -> None:
    # Refilled at one per 100 s: no new token comes during the test.
    with AgentServer(
        port=0, max_connections_per_ip=3, max_connect_rate=0.01, ssl=scheme.server_ssl
    ) as server:
        url = scheme.url(server.port)

        async def scenario() -> None:
            async with scheme.connect(url) as first, scheme.connect(url):
                async with scheme.connect(url):  # the burst: up to the cap
                    pass
                await wait_for(lambda: server.hub.stats()["connections"] == 2, what="released")
                # a slot is free; the rate is spent
                assert await scheme.refusal(url) == scheme.refused(429)
                await _served(scheme, url, OTHER_IP)  # its own bucket
                assert [r["type"] for r in await memgpt_exchange(first, user_message("hi"))] == (
                    DEMO_STEP
                )

        run(scenario())
        assert server.hub.stats()["connections_refused_rate"] == 1


def test_what_admission_keeps_per_address_is_bounded() -> None:
    """A bucket is forgotten once it would be full again: 100,000 addresses connecting
    one a millisecond leave the buckets of the last second only."""
    now = [0.0]
    admission = ConnectionAdmission(max_per_ip=10, max_rate=10.0, clock=lambda: now[0])
    for i in range(100_000):
        now[0] = i / 1000
        address = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        assert admission.admit(address) is None
        admission.release(address)
    assert admission.stats()["connection_ips"] == 0
    assert len(admission._buckets) <= 1000  # refill time: 10 tokens / 10 a second = 1 s


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset waiting), without blocking."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
def test_over_tls_connections_count_at_accept_and_those_over_the_cap_close_at_once(
    certificates: Certificates, transport: str
) -> None:
    """Half-sent ClientHellos and silent sockets hold a slot each from accept on; the ones
    beyond the cap are closed at once, counted, instead of waiting out a TLS handshake."""
    cap, beyond = 3, 4
    with AgentServer(
        port=0,
        max_connections_per_ip=cap,
        transport=transport,
        ssl=certificates.server(),
        handshake_timeout=60.0,  # no connection here ends by the deadline
    ) as server:
        stats = server.hub.stats
        with contextlib.ExitStack() as stack:
            sockets = [
                stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
                for _ in range(cap + beyond)
            ]
            for sock in sockets[::2]:
                sock.sendall(PARTIAL_CLIENT_HELLO)

            async def scenario() -> None:
                await wait_for(
                    lambda: sum(map(_closed_by_peer, sockets)) == beyond,
                    what=lambda: f"{sum(map(_closed_by_peer, sockets))} closed, {stats()}",
                )

            run(scenario())
            assert (stats()["connections"], stats()["connections_refused_per_ip"]) == (cap, beyond)

        async def released() -> None:
            await wait_for(lambda: stats()["connections"] == 0, what="released")
            await _served(
                Scheme("wss", None, certificates.client()), f"wss://127.0.0.1:{server.port}"
            )

        run(released())


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
def test_a_connection_stalled_in_its_tls_handshake_is_closed_at_the_handshake_timeout(
    certificates: Certificates, transport: str
) -> None:
    """TLS's own default would hold it 60 s; the one deadline from accept is 0.3 s."""
    with AgentServer(
        port=0, transport=transport, ssl=certificates.server(), handshake_timeout=0.3
    ) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as stalled:
            stalled.sendall(PARTIAL_CLIENT_HELLO)
            stalled.settimeout(10)
            with contextlib.suppress(ConnectionResetError):  # FIN or RST: either way, gone
                assert stalled.recv(1024) == b""
        run(wait_for(lambda: server.hub.stats()["connections"] == 0, what="released"))


def test_a_connection_silent_after_its_tls_handshake_is_closed_by_the_same_deadline(
    certificates: Certificates,
) -> None:
    """The deadline from accept covers the HTTP request after TLS too."""
    with AgentServer(port=0, ssl=certificates.server(), handshake_timeout=0.3) as server:
        address = ("127.0.0.1", server.port)
        with certificates.client().wrap_socket(
            socket.create_connection(address), server_hostname="127.0.0.1"
        ) as silent:
            silent.settimeout(10)
            with contextlib.suppress(ConnectionResetError, ssl.SSLEOFError):
                assert silent.recv(1024) == b""
        run(wait_for(lambda: server.hub.stats()["connections"] == 0, what="released"))


def test_out_of_file_descriptors_the_server_pauses_accepting_then_serves_again() -> None:
    """EMFILE at accept: one WARNING, accepting resumes a second later, no ERROR line."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fd_starved_server.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline().split()[1])
        url = PLAIN.url(port)

        async def scenario() -> None:
            with contextlib.ExitStack() as stack:  # more connections than fds to spare
                for _ in range(8):
                    stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            async with PLAIN.connect(url, open_timeout=10):  # once fds are free again
                pass

        run(scenario())
        _, errors = child.communicate(timeout=20)  # closes its stdin: it stops
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, errors
    assert "WARNING" in errors and "cannot accept" in errors, errors
    assert "ERROR" not in errors and "Traceback" not in errors, errors


def test_ipv6_peers_are_counted_per_64_and_ipv4_mapped_ones_as_their_ipv4() -> None:
    same = {peer_key("2001:db8:1:2::1"), peer_key("2001:db8:1:2:ffff:ee:dd:cc")}
    assert same == {"2001:db8:1:2::/64"}
    assert peer_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert peer_key("::ffff:192.0.2.7") == peer_key("192.0.2.7") == "192.0.2.7"
    assert peer_key("fe80::1%lo") == "fe80::/64"
    admission = ConnectionAdmission(max_per_ip=1, max_rate=0.0)
    assert admission.admit(peer_key("2001:db8:1:2::1")) is None
    refusal = admission.admit(peer_key("2001:db8:1:2::2"))  # another address, the same /64
    assert refusal is not None and refusal.status == 503
    assert admission.admit(peer_key("2001:db8:1:3::1")) is None


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_the_per_ip_cap_holds_over_ipv6_loopback(scheme: Scheme) -> None:
    with AgentServer(host="::1", port=0, max_connections_per_ip=2, ssl=scheme.server_ssl) as server:
        url = scheme.url(server.port, "[::1]")

        async def scenario() -> None:
            async with scheme.connect(url, "::1"), scheme.connect(url, "::1"):
                assert server.hub.stats()["connection_ips"] == 1
                assert await scheme.refusal(url) == scheme.refused(503)

        run(scenario())
        assert server.hub.stats()["connections_refused_per_ip"] == 1


@pytest.fixture
def served_with_cap() -> Iterator[int]:
    with serving("--max-connections-per-ip", "2") as (_, port):
        yield port


def test_agentcast_serve_caps_connections_per_ip(served_with_cap: int) -> None:
    url = f"ws://127.0.0.1:{served_with_cap}"

    async def scenario() -> None:
        async with PLAIN.connect(url), PLAIN.connect(url):
            assert await PLAIN.refusal(url) == 503
            await _served(PLAIN, url, OTHER_IP)

    run(scenario())


@pytest.mark.parametrize(
    "argument", [["--max-connections-per-ip", "-1"], ["--max-connect-rate", "-0.5"]]
)
def test_agentcast_serve_refuses_a_negative_limit_in_one_line(argument: list[str]) -> None:
    result = subprocess.run(
        [*AGENTCAST, "serve", "--port", "0", *argument],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "of at least 0, got" in result.stderr, result.stderr


def test_agentcast_serve_limits_per_ip_by_default_only_on_a_public_host() -> None:
    """On loopback every client of a local reverse proxy or bench shares one address: no
    per-IP limit unless asked for; a public --host gets 256 connections an address."""

    async def connections_until_refused(url: str, most: int) -> tuple[int, int | None]:
        async with contextlib.AsyncExitStack() as open_ones:
            for count in range(most):
                try:
                    await open_ones.enter_async_context(websockets.connect(url))
                except websockets.InvalidStatus as refused:
                    return count, int(refused.response.status_code)
            return most, None

    with serving() as (_, port):
        assert run(connections_until_refused(f"ws://127.0.0.1:{port}", 300)) == (300, None)
    with serving("--insecure", host="0.0.0.0") as (_, port):
        assert run(connections_until_refused(f"ws://127.0.0.1:{port}", 300)) == (256, 503)
