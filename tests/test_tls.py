"""wss://: real clients (websockets, picows, the CLI's) against a server with a trustme
certificate; every byte goes through each client's own TLS stream."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import orjson
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from picows import WSMsgType, ws_connect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from agentcast import Broadcaster
from agentcast.memgpt.app import AgentServer
from agentcast.serve.server import ServerOptions
from agentcast.serve.tls import server_context
from clients import (
    DEMO_STEP,
    Collector,
    memgpt_exchange,
    picows_clients,
    publish_until_a_client_is_dropped,
    raw_upgrade,
    run,
    user_message,
    wait_for,
    websockets_clients,
)
from redis_server import free_port
from tls_certificates import Certificates, issue, issue_cn_only

AGENTCAST = [sys.executable, "-m", "agentcast"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue(tmp_path_factory.mktemp("tls"))


def exchange(url: str, context: ssl.SSLContext, text: str = "hello") -> list[str]:
    """One MemGPT exchange with the demo agent on a new websockets connection: reply types."""
    with connect(url, ssl=context) as client:
        client.send(orjson.dumps(user_message(text, "demo")).decode())
        return [orjson.loads(client.recv(timeout=10))["type"] for _ in DEMO_STEP]


@pytest.fixture
def agent_server(certificates: Certificates) -> Iterator[AgentServer]:
    server = AgentServer(port=0, ssl=certificates.server()).start()
    yield server
    server.stop()


def test_memgpt_exchange_over_wss_with_websockets(
    agent_server: AgentServer, certificates: Certificates
) -> None:
    async def scenario() -> list[str]:
        url = f"wss://127.0.0.1:{agent_server.hub.port}/"
        async with websockets_clients(url, 1, ssl=certificates.client()) as (client,):
            replies = await memgpt_exchange(client, user_message("over tls"))
        return [reply["type"] for reply in replies]

    assert run(scenario()) == DEMO_STEP


def test_memgpt_exchange_over_wss_with_picows(
    agent_server: AgentServer, certificates: Certificates
) -> None:
    async def scenario() -> list[dict[str, object]]:
        url = f"wss://127.0.0.1:{agent_server.hub.port}/"
        transport, client = await ws_connect(Collector, url, ssl_context=certificates.client())
        try:
            transport.send(WSMsgType.TEXT, orjson.dumps(user_message("over tls")))
            await wait_for(lambda: len(client.messages) == len(DEMO_STEP))
        finally:
            transport.disconnect()
            await transport.wait_disconnected()
        return [orjson.loads(message) for message in client.messages]

    replies = run(scenario())
    assert [reply["type"] for reply in replies] == DEMO_STEP
    assert replies[-2]["message"] == "You said: over tls"


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
def test_broadcast_reaches_many_tls_clients_complete_and_in_order(
    hub_factory: Callable[..., Broadcaster], certificates: Certificates, transport: str
) -> None:
    """Small messages, and large ones that span several TLS records, in one stream."""
    clients = 40
    sizes = [200] * 300 + [100_000] * 5 + [200] * 300
    hub = hub_factory(ssl=certificates.server(), transport=transport)

    async def scenario() -> list[list[bytes]]:
        url = f"wss://127.0.0.1:{hub.port}/"
        async with picows_clients(url, clients, ssl_context=certificates.client()) as listeners:
            await wait_for(lambda: hub.client_count == clients)
            for index, size in enumerate(sizes):
                hub.publish({"i": index, "pad": "x" * size})
            await wait_for(
                lambda: all(len(c.messages) == len(sizes) for c in listeners), timeout=60
            )
            return [c.messages for c in listeners]

    expected = [orjson.dumps({"i": i, "pad": "x" * size}) for i, size in enumerate(sizes)]
    for received in run(scenario()):
        assert received == expected
    stats = hub.stats()
    assert stats["writes"] == 0, "a direct send(2) of the shared frame bytes under TLS"
    assert stats["queued_writes"] > 0


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
def test_a_tls_client_that_never_reads_is_dropped_as_slow(
    hub_factory: Callable[..., Broadcaster], certificates: Certificates, transport: str
) -> None:
    """Under TLS the client's budget counts what its TLS transport holds unsent, with either
    transport: a reader that stalls is closed with 1013, not buffered without bound."""
    hub = hub_factory(ssl=certificates.server(), transport=transport, client_budget=64 * 1024)
    stalled = raw_upgrade(hub.port, rcvbuf=4096, tls=certificates.client())
    try:
        run(wait_for(lambda: hub.client_count == 1))
        publish_until_a_client_is_dropped(hub)
        assert hub.stats()["dropped_clients"] == 1
    finally:
        stalled.close()
    run(wait_for(lambda: hub.client_count == 0))


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
def test_a_request_head_over_16_kib_gets_431_over_tls(
    hub_factory: Callable[..., Broadcaster], certificates: Certificates, transport: str
) -> None:
    """A TLS transport cannot half-close: the 431 goes out, the rest is read and dropped."""
    hub = hub_factory(ssl=certificates.server(), transport=transport)
    with (
        socket.create_connection(("127.0.0.1", hub.port), timeout=10) as plain,
        certificates.client().wrap_socket(plain, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert hub.stats()["upgrades_refused_head_size"] == 1
    with connect(f"wss://127.0.0.1:{hub.port}/", ssl=certificates.client()) as other:
        other.ping().wait(10)


def test_plain_client_on_the_tls_port_fails_and_the_others_are_served(
    agent_server: AgentServer, certificates: Certificates
) -> None:
    port = agent_server.hub.port
    with connect(f"wss://127.0.0.1:{port}/", ssl=certificates.client()) as before:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            answer = b""
            with contextlib.suppress(ConnectionResetError):  # a reset ends it as well
                while chunk := plain.recv(4096):  # until the server ends the connection
                    answer += chunk
        assert b"HTTP/1.1" not in answer
        before.send(orjson.dumps(user_message("still here")).decode())
        assert [orjson.loads(before.recv(timeout=10))["type"] for _ in DEMO_STEP] == DEMO_STEP
    assert exchange(f"wss://127.0.0.1:{port}/", certificates.client()) == DEMO_STEP


def test_a_client_that_does_not_trust_the_certificate_is_refused(
    agent_server: AgentServer,
) -> None:
    strangers = trustme.CA()  # not the CA that issued the server's certificate
    context = ssl.create_default_context()
    strangers.configure_trust(context)

    async def scenario() -> None:
        await ws_connect(
            Collector, f"wss://127.0.0.1:{agent_server.hub.port}/", ssl_context=context
        )

    with pytest.raises(ssl.SSLCertVerificationError):
        run(scenario())
    assert agent_server.hub.client_count == 0


# ---- the command line ---------------------------------------------------------------------


def test_serve_with_certfile_and_keyfile_then_client_with_cafile(
    certificates: Certificates,
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*AGENTCAST, "serve", "--port", str(port),
         "--certfile", str(certificates.certfile), "--keyfile", str(certificates.keyfile)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"wss://127.0.0.1:{port}/" in banner, banner + (process.stderr.read() or "")
        url = f"wss://127.0.0.1:{port}/"
        assert exchange(url, certificates.client()) == DEMO_STEP
        chat = subprocess.run(
            [*AGENTCAST, "client", url, "--agent-id", "demo", "--cafile", str(certificates.cafile)],
            input="hello\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert chat.returncode == 0, chat.stderr
        assert "[assistant] You said: hello" in chat.stdout.splitlines()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Path:
    """Files that are each wrong in one way: junk, another certificate's key, an
    encrypted key."""
    directory = tmp_path_factory.mktemp("bad")
    (directory / "junk.pem").write_text("not a certificate\n")
    certificates.ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(
        str(directory / "other-key.pem")
    )
    key = serialization.load_pem_private_key(certificates.keyfile.read_bytes(), password=None)
    (directory / "encrypted-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return directory


@pytest.mark.parametrize(
    ("cert", "key", "words"),
    [
        ("missing.pem", "key", "cannot read the certificate file {bad}/missing.pem"),
        ("cert", "missing.pem", "cannot read the key file {bad}/missing.pem"),
        ("cert", ".", "cannot read the key file {bad}: Is a directory"),
        ("junk.pem", "key", "no PEM certificate in {bad}/junk.pem"),
        ("cert", "junk.pem", "no PEM private key in {bad}/junk.pem"),
        ("cert", None, "no PEM private key in {cert} (give it with --keyfile)"),
        ("cert", "other-key.pem", "the private key in {bad}/other-key.pem does not match"),
        ("cert", "encrypted-key.pem", "the private key in {bad}/encrypted-key.pem is encrypted"),
        (None, "key", "--keyfile needs --certfile"),
    ],
)
def test_certificate_errors_are_one_line_with_exit_2(
    certificates: Certificates, bad_files: Path, cert: str | None, key: str | None, words: str
) -> None:
    def path(name: str) -> str:
        named = {"cert": certificates.certfile, "key": certificates.keyfile}
        return str(named.get(name, bad_files / name))

    args = ["serve", "--port", "0"]
    args += [] if cert is None else ["--certfile", path(cert)]
    args += [] if key is None else ["--keyfile", path(key)]
    result = subprocess.run([*AGENTCAST, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    expected = words.format(bad=bad_files, cert=certificates.certfile)
    assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.parametrize(
    ("url", "cafile", "words"),
    [
        ("ws://127.0.0.1:1/", "ca", "--cafile needs a wss:// URL"),
        ("wss://127.0.0.1:1/", "missing.pem", "cannot read the CA file"),
        ("wss://127.0.0.1:1/", "junk.pem", "no PEM certificate in"),
    ],
)
def test_client_cafile_errors_are_one_line_with_exit_2(
    certificates: Certificates, bad_files: Path, url: str, cafile: str, words: str
) -> None:
    path = certificates.cafile if cafile == "ca" else bad_files / cafile
    result = subprocess.run(
        [*AGENTCAST, "client", url, "--agent-id", "a", "--cafile", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_server_context_needs_no_keyfile_when_the_certfile_holds_the_key(
    certificates: Certificates, tmp_path: Path
) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(certificates.keyfile.read_bytes() + certificates.certfile.read_bytes())
    server = AgentServer(port=0, ssl=server_context(str(combined))).start()
    try:
        assert exchange(f"wss://127.0.0.1:{server.hub.port}/", certificates.client()) == DEMO_STEP
    finally:
        server.stop()


def test_under_tls_the_own_origin_is_https(
    hub_factory: Callable[..., Broadcaster], certificates: Certificates
) -> None:
    """A page served from https://host:port may connect; the same host over http may not."""
    hub = hub_factory(ssl=certificates.server())
    url = f"wss://127.0.0.1:{hub.port}/"
    with connect(url, ssl=certificates.client(), origin=f"https://127.0.0.1:{hub.port}"):
        pass
    with pytest.raises(InvalidStatus, match="403"):
        connect(url, ssl=certificates.client(), origin=f"http://127.0.0.1:{hub.port}")
    assert hub.stats()["origin_refused"] == 1


@pytest.mark.parametrize(
    ("tls", "asked", "used"),
    [
        (False, None, "uvloop"),
        (True, None, "aiofastnet"),
        (True, "uvloop", "uvloop"),
        (False, "aiofastnet", "aiofastnet"),
    ],
)
def test_the_transport_is_picked_per_protocol_unless_asked(
    certificates: Certificates, tls: bool, asked: Literal["uvloop", "aiofastnet"] | None, used: str
) -> None:
    """uvloop's transports hold less per ws:// client; aiofastnet's TLS costs less CPU per
    wss:// delivery at the same memory (bench/RESULTS.md): None picks by protocol."""
    options = ServerOptions(ssl=certificates.server() if tls else None, transport=asked)
    assert options.transport == used


# ---- the client: what no retry can fix ends at once -------------------------------------


def client_with_open_input(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``agentcast client`` run to its end with an input that stays open, so that it ends
    on what the server does, not on the end of its input."""
    typed, typing = os.pipe()
    try:
        return subprocess.run(argv, stdin=typed, capture_output=True, text=True, timeout=timeout)
    finally:
        os.close(typed)
        os.close(typing)


@pytest.fixture(scope="module")
def cn_only(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A certificate naming 127.0.0.1 in its CN only, as older tools issue them: an IP
    address is matched against the subjectAltName alone."""
    return issue_cn_only(tmp_path_factory.mktemp("cn-only"))


@pytest.mark.parametrize("protocol", ["agentcast", "memgpt"])
@pytest.mark.parametrize(
    ("scheme", "server", "cafile", "words"),
    [
        pytest.param(
            "wss", "tls", None,
            "the server's certificate is not trusted (unable to get local issuer certificate):"
            " give its CA with --cafile",
            id="untrusted",
        ),
        pytest.param(
            "ws", "tls", None, "the server speaks wss://: use wss://127.0.0.1:{port}/",
            id="ws-to-tls",
        ),
        pytest.param(
            "wss", "plain", "ca", "the server speaks ws://: use ws://127.0.0.1:{port}/",
            id="wss-to-plain",
        ),
        pytest.param(
            "wss", "cn-only", "cn-only",
            "the server's certificate is not for 127.0.0.1 (IP address mismatch, certificate is"
            " not valid for '127.0.0.1'.): an IP address must be in its subjectAltName",
            id="ip-not-in-san",
        ),
    ],
)  # fmt: skip
def test_a_first_connect_no_retry_can_fix_is_one_line_and_exit_1(
    certificates: Certificates,
    cn_only: Certificates,
    protocol: str,
    scheme: str,
    server: str,
    cafile: str | None,
    words: str,
) -> None:
    contexts = {"tls": certificates.server(), "plain": None, "cn-only": cn_only.server()}
    with AgentServer(port=0, ssl=contexts[server]) as running:
        url = f"{scheme}://127.0.0.1:{running.port}/"
        argv = [*AGENTCAST, "client", url, "--agent-id", "demo", "--protocol", protocol]
        argv += ["--retries", "12", "--backoff", "10"]  # no fast way out but failing fast
        if cafile is not None:
            argv += ["--cafile", str((certificates if cafile == "ca" else cn_only).cafile)]
        result = client_with_open_input(argv, timeout=30)
        assert running.hub.client_count == 0
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"agentcast client: cannot connect to {url}: "), line
    assert words.format(port=running.port) in line, line


def client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl): one ClientHello record."""
    tls = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="127.0.0.1"
    )
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_tls_handshake_on_a_plain_port_is_answered_400_on_its_first_read() -> None:
    """Not after the handshake deadline (30 s here): its first byte, 0x16, begins no HTTP
    request. Counted as a bad handshake; the server goes on serving plain clients."""
    hello = client_hello()
    assert hello[:2] == b"\x16\x03"
    with AgentServer(port=0, handshake_timeout=30.0) as running, socket.socket() as sock:
        sock.settimeout(10)  # well under the deadline: a 400 by then is not the deadline's
        sock.connect(("127.0.0.1", running.port))
        sock.sendall(hello)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"a TLS handshake where an HTTP request was expected: use ws://" in answer
        assert running.hub.stats()["upgrades_refused_handshake"] == 1
        assert exchange(f"ws://127.0.0.1:{running.port}/", None) == DEMO_STEP


def test_wss_to_a_plain_port_ends_the_client_before_the_servers_handshake_timeout() -> None:
    """The CLI's wss:// dial of a plain port fails on the server's 400, not on its handshake
    deadline (30 s here, 5 s by default; the CLI has 10 s), and says to use ws://."""
    with AgentServer(port=0, handshake_timeout=30.0) as running:
        url = f"wss://127.0.0.1:{running.port}/"
        argv = [*AGENTCAST, "client", url, "--agent-id", "demo", "--retries", "12"]
        result = client_with_open_input(argv, timeout=10)
        assert running.hub.stats()["upgrades_refused_handshake"] == 1
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line == (
        f"agentcast client: cannot connect to {url}: the server speaks ws://:"
        f" use ws://127.0.0.1:{running.port}/"
    )
