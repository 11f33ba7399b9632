"""Identity at upgrade: JWT (HS256, RS256, ES256, JWKS), Origin, expiry and refresh, and
protected mode, with real clients and raw handshakes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agentcast import Broadcaster
from agentcast.memgpt import protocol
from agentcast.memgpt.app import AgentServer
from agentcast.serve.auth import (
    TOKEN_EXPIRED,
    Identity,
    JWKSKeys,
    JWTAuthenticator,
    Refused,
    UpgradeRequest,
)
from clients import run, wait_for
from jwks_server import KEY_TYPES, JWKSHandler, jwks, serving_jwks
from redis_server import free_port

SECRET = b"s" * 32
AGENTCAST = [sys.executable, "-m", "agentcast"]


def token(
    key: Any = SECRET, algorithm: str = "HS256", kid: str | None = None, **claims: Any
) -> str:
    body: dict[str, Any] = {"sub": "alice", "exp": int(time.time()) + 300, **claims}
    headers = None if kid is None else {"kid": kid}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm, headers)


def upgrade_status(port: int, path: str = "/", headers: dict[str, str] | None = None) -> int:
    """The HTTP status the server answers a raw WebSocket upgrade with."""
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        **(headers or {}),
    }
    lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in fields.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n" not in response:
            chunk = sock.recv(4096)
            assert chunk, f"closed without a status line: {response!r}"
            response += chunk
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def hs256_hub(hub_factory: Callable[..., Broadcaster]) -> Broadcaster:
    return hub_factory(authenticate=JWTAuthenticator(secret=SECRET))


# ---- who may connect ------------------------------------------------------


def test_no_token_is_401(hs256_hub: Broadcaster) -> None:
    assert upgrade_status(hs256_hub.port) == 401
    assert upgrade_status(hs256_hub.port, headers={"Authorization": "Basic YTpi"}) == 401


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: token(exp=int(time.time()) - 60), id="expired"),
        pytest.param(lambda: token(key=b"w" * 32), id="forged-wrong-key"),
        pytest.param(lambda: token(nbf=int(time.time()) + 600), id="nbf-in-the-future"),
        pytest.param(lambda: token(sub=None), id="no-sub"),
        pytest.param(lambda: token(agents="a*"), id="agents-not-a-list"),
        pytest.param(lambda: jwt.encode({"sub": "alice"}, None, "none"), id="alg-none"),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_401(hs256_hub: Broadcaster, bad: Callable[[], str]) -> None:
    assert upgrade_status(hs256_hub.port, f"/?token={bad()}") == 401
    assert upgrade_status(hs256_hub.port, headers={"Authorization": f"Bearer {bad()}"}) == 401
    assert hs256_hub.stats()["auth_refused"] == 2
    assert hs256_hub.client_count == 0


def test_token_in_query_or_bearer_header_gives_the_identity(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    seen: list[Identity | None] = []
    hub: Broadcaster = hub_factory(
        authenticate=JWTAuthenticator(secret=SECRET),
        on_connect=lambda client_id: seen.append(hub.identity(client_id)),
    )
    url = f"ws://127.0.0.1:{hub.port}/"

    async def scenario() -> None:
        query = token(sub="q", agents=["a*"], watch=["w"], admin=False)
        async with websockets.connect(f"{url}?token={query}"):
            await wait_for(lambda: len(seen) == 1)
        header = {"Authorization": f"Bearer {token(sub='h', admin=True)}"}
        async with websockets.connect(url, additional_headers=header):
            await wait_for(lambda: len(seen) == 2)

    run(scenario())
    first, second = seen
    assert first is not None and second is not None
    assert (first.sub, first.agents, first.watch, first.admin) == ("q", ("a*",), ("w",), False)
    assert first.may_talk("a1") and not first.may_talk("w") and first.may_read("w")
    assert second.sub == "h" and second.may_talk("anything")


def test_a_custom_authenticator_sees_the_request_and_chooses_the_status(
    hub_factory: Callable[..., Broadcaster], caplog: pytest.LogCaptureFixture
) -> None:
    def by_header(request: UpgradeRequest) -> Identity:
        assert request.peer is not None and request.peer[0] == "127.0.0.1", request.peer
        if request.headers.get("X-Team") == "blue":
            return Identity("blue", agents=(request.query["agent"][0],))
        if request.headers.get("X-Team") == "broken":
            raise RuntimeError("the directory is down")
        raise Refused("banned", HTTPStatus.FORBIDDEN)

    hub = hub_factory(authenticate=by_header)
    assert upgrade_status(hub.port, "/?agent=a1", {"X-Team": "blue"}) == 101
    assert upgrade_status(hub.port, headers={"X-Team": "red"}) == 403
    with caplog.at_level(logging.ERROR, "agentcast.auth"):
        assert upgrade_status(hub.port, headers={"X-Team": "broken"}) == 500
    assert [r.getMessage() for r in caplog.records] == ["the authenticator failed"]
    assert hub.stats()["auth_refused"] == 2


def _pem(public_key: Any) -> bytes:
    pem: bytes = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


@pytest.mark.parametrize("algorithm", sorted(KEY_TYPES))
def test_rs256_and_es256_public_keys(
    hub_factory: Callable[..., Broadcaster], tmp_path: Path, algorithm: str
) -> None:
    private, other = KEY_TYPES[algorithm](), KEY_TYPES[algorithm]()
    (tmp_path / "key.pem").write_bytes(_pem(private.public_key()))
    hub = hub_factory(authenticate=JWTAuthenticator.from_public_key_file(tmp_path / "key.pem"))
    assert upgrade_status(hub.port, f"/?token={token(private, algorithm)}") == 101
    assert upgrade_status(hub.port, f"/?token={token(other, algorithm)}") == 401
    # The public key used as an HMAC secret (algorithm confusion) is refused.
    confused = _hs256_by_hand({"sub": "x"}, _pem(private.public_key()))
    assert upgrade_status(hub.port, f"/?token={confused}") == 401


def _hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    """What pyjwt refuses to sign: an HS256 token keyed with a public key's PEM."""
    segments = [
        base64.urlsafe_b64encode(orjson.dumps(part)).rstrip(b"=")
        for part in ({"alg": "HS256", "typ": "JWT"}, claims)
    ]
    signing_input = b".".join(segments)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def test_a_public_key_of_another_curve_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p384.pem").write_bytes(_pem(ec.generate_private_key(ec.SECP384R1()).public_key()))
    with pytest.raises(ValueError, match="P-256"):
        JWTAuthenticator.from_public_key_file(tmp_path / "p384.pem")


def test_a_secret_file_others_can_read_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "secret.key"
    key.write_text("k" * 32)
    with caplog.at_level(logging.WARNING, "agentcast.auth"):
        key.chmod(0o600)
        JWTAuthenticator.from_secret_file(key)
        assert caplog.records == []
        key.chmod(0o644)
        JWTAuthenticator.from_secret_file(key)
    [record] = caplog.records
    assert "mode 644" in record.getMessage() and "chmod 600" in record.getMessage()


def _until_accepted(port: int, path: str) -> None:
    """A token with a kid new to the cache is refused until the background refetch has
    landed; a client retries."""

    async def poll() -> None:
        await wait_for(lambda: upgrade_status(port, path) == 101, what="the rotated key")

    run(poll())


def test_jwks_file_with_kid_rotation(
    hub_factory: Callable[..., Broadcaster], tmp_path: Path
) -> None:
    first, second = KEY_TYPES["RS256"](), KEY_TYPES["RS256"]()
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks(("k1", first)))
    keys = JWKSKeys(str(path), refetch_interval=0.0)
    hub = hub_factory(authenticate=JWTAuthenticator(jwks=keys))
    assert upgrade_status(hub.port, f"/?token={token(first, 'RS256', kid='k1')}") == 101
    assert upgrade_status(hub.port, f"/?token={token(second, 'RS256', kid='k1')}") == 401
    path.write_bytes(jwks(("k1", first), ("k2", second)))
    _until_accepted(hub.port, f"/?token={token(second, 'RS256', kid='k2')}")
    assert keys.kids == {"k1", "k2"}
    run(wait_for(lambda: not keys.fetching))


@pytest.fixture
def jwks_url() -> Iterator[type[JWKSHandler]]:
    with serving_jwks() as handler:
        yield handler


def test_jwks_url_fetched_off_the_loop_with_kid_rotation(
    hub_factory: Callable[..., Broadcaster], jwks_url: Any
) -> None:
    first, second = KEY_TYPES["RS256"](), KEY_TYPES["RS256"]()
    jwks_url.body = jwks(("k1", first))
    keys = JWKSKeys(jwks_url.url, refetch_interval=0.0)
    hub = hub_factory(authenticate=JWTAuthenticator(jwks=keys))
    assert upgrade_status(hub.port, f"/?token={token(first, 'RS256', kid='k1')}") == 101
    assert jwks_url.fetches == 1  # cached: a known kid costs no fetch
    jwks_url.body = jwks(("k2", second))
    _until_accepted(hub.port, f"/?token={token(second, 'RS256', kid='k2')}")
    run(wait_for(lambda: not keys.fetching))
    assert upgrade_status(hub.port, f"/?token={token(first, 'RS256', kid='k1')}") == 401
    run(wait_for(lambda: not keys.fetching))


def test_unknown_kids_refetch_at_most_once_a_minute(
    hub_factory: Callable[..., Broadcaster], jwks_url: Any
) -> None:
    jwks_url.body = jwks(("k1", KEY_TYPES["RS256"]()))
    keys = JWKSKeys(jwks_url.url)
    assert keys.refetch_interval >= 60  # a client may make the server fetch this often
    hub = hub_factory(authenticate=JWTAuthenticator(jwks=keys))
    rsa_key = KEY_TYPES["RS256"]()
    for n in range(20):
        assert upgrade_status(hub.port, f"/?token={token(rsa_key, 'RS256', kid=f'x{n}')}") == 401
    run(wait_for(lambda: not keys.fetching))
    assert jwks_url.fetches == 1  # the constructor's: the interval has not passed since
    assert hub.stats()["jwks_refetches"] == 0


def test_unknown_kids_start_one_fetch_at_a_time_and_are_counted(
    hub_factory: Callable[..., Broadcaster], jwks_url: Any
) -> None:
    jwks_url.body = jwks(("k1", KEY_TYPES["RS256"]()))
    keys = JWKSKeys(jwks_url.url, refetch_interval=0.0)
    hub = hub_factory(authenticate=JWTAuthenticator(jwks=keys))
    jwks_url.held = True  # the refetch's answer waits
    rsa_key = KEY_TYPES["RS256"]()
    for n in range(20):
        assert upgrade_status(hub.port, f"/?token={token(rsa_key, 'RS256', kid=f'x{n}')}") == 401
    run(wait_for(lambda: jwks_url.fetches == 2, what="the refetch reaching the server"))
    assert keys.fetching and hub.stats()["jwks_refetches"] == 1
    jwks_url.release.set()
    run(wait_for(lambda: not keys.fetching))
    assert jwks_url.fetches == 2


def test_a_jwks_url_that_redirects_is_refused(
    jwks_url: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with serving_jwks(jwks(("k1", KEY_TYPES["RS256"]()))) as elsewhere:
        jwks_url.redirect = elsewhere.url
        with pytest.raises(ValueError, match="redirect"):
            JWKSKeys(jwks_url.url)
        jwks_url.redirect = None
        jwks_url.body = elsewhere.body
        keys = JWKSKeys(jwks_url.url, refetch_interval=0.0)
        jwks_url.redirect = elsewhere.url  # a later refetch is refused too
        assert keys.key("k2") is None
        run(wait_for(lambda: not keys.fetching))
        assert elsewhere.fetches == 0
    assert keys.kids == {"k1"}  # the cached keys stay
    assert "redirect" in caplog.text


# ---- hostile tokens and headers: refused and counted, never a 500 or an ERROR line ----


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def confused_token(kid: str) -> str:
    """A token whose header names ES256 for the kid of an RSA key in the JWKS."""
    return token(KEY_TYPES["ES256"](), "ES256", kid=kid)


@pytest.fixture
def jwks_server(jwks_url: Any) -> Iterator[tuple[AgentServer, Any]]:
    """An AgentServer verifying RS256 tokens against a JWKS served on 127.0.0.1, and
    the key ``k1`` it holds."""
    private = KEY_TYPES["RS256"]()
    jwks_url.body = jwks(("k1", private))
    with AgentServer(port=0, authenticate=JWTAuthenticator.from_jwks(jwks_url.url)) as server:
        yield server, private


def test_a_token_whose_alg_names_the_other_key_type_is_401_and_counted(
    jwks_server: tuple[AgentServer, Any], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = jwks_server
    assert upgrade_status(server.port, f"/?token={confused_token('k1')}") == 401
    assert server.hub.stats()["auth_refused"] == 1
    assert error_lines(caplog) == []


def test_a_refresh_whose_alg_names_the_other_key_type_is_answered_unauthorized(
    jwks_server: tuple[AgentServer, Any], caplog: pytest.LogCaptureFixture
) -> None:
    server, private = jwks_server
    url = f"ws://127.0.0.1:{server.port}/?token={token(private, 'RS256', kid='k1')}"

    async def scenario() -> None:
        async with websockets.connect(url) as websocket:
            for _ in range(3):
                await websocket.send(protocol.refresh(confused_token("k1")).decode())
                reply = orjson.loads(await asyncio.wait_for(websocket.recv(), 5))
                assert reply["code"] == "unauthorized", reply

    run(scenario())
    assert server.hub.stats()["refresh_refused"] == 3
    assert error_lines(caplog) == []


def test_a_path_that_urlsplit_refuses_is_401_with_authentication(
    hs256_hub: Broadcaster, caplog: pytest.LogCaptureFixture
) -> None:
    assert upgrade_status(hs256_hub.port, "//[") == 401
    assert upgrade_status(hs256_hub.port, f"//[?token={token()}") == 101
    assert hs256_hub.stats()["auth_refused"] == 1
    assert error_lines(caplog) == []


@pytest.mark.parametrize("authenticated", [False, True], ids=["open", "auth"])
def test_an_origin_that_urlsplit_refuses_is_403_and_counted(
    hub_factory: Callable[..., Broadcaster], caplog: pytest.LogCaptureFixture, authenticated: bool
) -> None:
    hub = hub_factory(authenticate=JWTAuthenticator(secret=SECRET) if authenticated else None)
    for origin in ("http://[", "http://[::1", "http://127.0.0.1:99999"):
        assert upgrade_status(hub.port, f"/?token={token()}", {"Origin": origin}) == 403
    assert hub.stats()["origin_refused"] == 3
    assert error_lines(caplog) == []


# ---- Origin -----------------------------------------------------------------


def test_origin_check(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(allowed_origins=["https://*.example.com"])
    port = hub.port
    assert upgrade_status(port) == 101  # not a browser
    assert upgrade_status(port, headers={"Origin": f"http://127.0.0.1:{port}"}) == 101
    assert upgrade_status(port, headers={"Origin": "HTTPS://App.Example.COM"}) == 101
    assert upgrade_status(port, headers={"Origin": "http://evil.example"}) == 403
    assert upgrade_status(port, headers={"Origin": f"http://127.0.0.1:{port + 1}"}) == 403
    assert upgrade_status(port, headers={"Origin": f"https://127.0.0.1:{port}"}) == 403
    assert upgrade_status(port, headers={"Origin": "null"}) == 403
    assert upgrade_status(port, headers={"Origin": "https://example.com.evil.org"}) == 403
    assert hub.stats()["origin_refused"] == 5


def test_dns_rebinding_origin_is_refused_without_authentication(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    """evil.example rebound to 127.0.0.1: the browser sends its own name as Host."""

    def same_origin(host: str, port: int) -> dict[str, str]:
        return {"Host": f"{host}:{port}", "Origin": f"http://{host}:{port}"}

    open_hub = hub_factory()
    assert upgrade_status(open_hub.port, headers=same_origin("evil.example", open_hub.port)) == 403
    assert upgrade_status(open_hub.port, headers=same_origin("localhost", open_hub.port)) == 101
    assert upgrade_status(open_hub.port, headers=same_origin("[::1]", open_hub.port)) == 101
    # With authentication a DNS name may be the own origin: the page still needs a token.
    auth_hub = hub_factory(authenticate=JWTAuthenticator(secret=SECRET))
    named = same_origin("agents.example", auth_hub.port)
    assert upgrade_status(auth_hub.port, headers=named) == 401
    assert upgrade_status(auth_hub.port, f"/?token={token()}", named) == 101


def test_foreign_origin_refused_with_websockets_client(hub: Broadcaster) -> None:
    async def scenario() -> None:
        url = f"ws://127.0.0.1:{hub.port}/"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, origin="http://evil.example")  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        async with websockets.connect(url, origin=f"http://127.0.0.1:{hub.port}"):  # type: ignore[arg-type]
            pass

    run(scenario())


# ---- expiry and refresh -------------------------------------------------------


@pytest.fixture
def agent_server() -> Iterator[AgentServer]:
    server = AgentServer(port=0, authenticate=JWTAuthenticator(secret=SECRET)).start()
    yield server
    server.stop()


async def _reply(websocket: websockets.ClientConnection, payload: bytes) -> dict[str, Any]:
    await websocket.send(payload.decode())
    reply: dict[str, Any] = orjson.loads(await websocket.recv())
    return reply


def test_a_client_that_does_not_refresh_is_closed_with_3005_at_exp(
    agent_server: AgentServer,
) -> None:
    async def scenario() -> None:
        url = f"ws://127.0.0.1:{agent_server.port}/?token={token(exp=int(time.time()) + 1)}"
        async with websockets.connect(url) as websocket:
            await websocket.wait_closed()
            assert websocket.close_code == TOKEN_EXPIRED
            assert websocket.close_reason == "token expired"

    run(scenario())
    assert agent_server.hub.stats()["tokens_expired"] == 1


def test_refresh_before_exp_keeps_the_connection_past_the_old_exp(
    agent_server: AgentServer,
) -> None:
    base = f"ws://127.0.0.1:{agent_server.port}/?token="
    old_exp = int(time.time()) + 2

    async def scenario() -> None:
        async with (
            websockets.connect(base + token(exp=old_exp, agents=["a*"])) as refreshed,
            websockets.connect(base + token(exp=old_exp)) as witness,
        ):
            renewed = token(exp=old_exp + 300, agents=["a*"])
            ack = await _reply(refreshed, protocol.refresh(renewed))
            assert ack == {"type": "command_response", "status": "OK: token refreshed"}
            # The witness shares the old exp: once it is closed, that timer has fired.
            await witness.wait_closed()
            assert witness.close_code == TOKEN_EXPIRED
            reply = await _reply(refreshed, protocol.subscribe("a1"))
            assert reply["type"] == "command_response", reply

    run(scenario())


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda exp: token(exp=exp + 300, sub="mallory"), id="other-sub"),
        pytest.param(lambda exp: token(exp=exp + 300, admin=True), id="more-rights"),
        pytest.param(lambda exp: token(key=b"w" * 32, exp=exp + 300), id="forged"),
        pytest.param(lambda exp: token(exp=exp - 600), id="expired"),
    ],
)
def test_a_bad_refresh_is_unauthorized_and_the_old_exp_stands(
    agent_server: AgentServer, bad: Callable[[int], str]
) -> None:
    exp = int(time.time()) + 2

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{agent_server.port}/?token={token(exp=exp)}"
        async with websockets.connect(url) as websocket:
            reply = await _reply(websocket, protocol.refresh(bad(exp)))
            assert reply["type"] == "server_error" and reply["code"] == "unauthorized", reply
            await websocket.wait_closed()
            assert websocket.close_code == TOKEN_EXPIRED

    run(scenario())


def test_refresh_without_authentication_is_unauthorized() -> None:
    with AgentServer(port=0) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as websocket:
                reply = await _reply(websocket, protocol.refresh(token()))
                assert reply["code"] == "unauthorized"
                assert (await _reply(websocket, protocol.subscribe("a")))["type"] == (
                    "command_response"
                )

        run(scenario())


# ---- protected mode (the command line) -------------------------------------------


def test_serving_a_public_address_without_auth_refuses_in_one_line() -> None:
    result = subprocess.run(
        [*AGENTCAST, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--auth-" in lines[0] and "--insecure" in lines[0]


def _serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*AGENTCAST, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline()


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    return stderr


def test_insecure_serves_a_public_address_with_a_warning() -> None:
    port = free_port()
    process, banner = _serve("--host", "0.0.0.0", "--port", str(port), "--insecure")
    try:
        assert f":{port}/" in banner
        assert upgrade_status(port) == 101
    finally:
        stderr = _stop(process)
    assert "--insecure" in stderr and "WARNING" in stderr


def test_serve_with_a_secret_file_authenticates(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    (tmp_path / "secret").chmod(0o600)  # else serve warns
    port = free_port()
    process, banner = _serve(
        "--host", "0.0.0.0", "--port", str(port), "--auth-secret-file", str(tmp_path / "secret")
    )
    try:
        assert f":{port}/" in banner
        assert upgrade_status(port) == 401
        assert upgrade_status(port, f"/?token={token()}") == 101
        assert upgrade_status(port, headers={"Origin": "http://evil.example"}) == 403
    finally:
        _stop(process)


@pytest.mark.parametrize("audience", [None, "agentcast"], ids=["no-audience", "audience"])
def test_serve_warns_once_when_tokens_of_any_audience_are_accepted(
    tmp_path: Path, audience: str | None
) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "secret").chmod(0o600)  # else serve warns
    options = ["--auth-secret-file", str(tmp_path / "secret")]
    if audience is not None:
        options += ["--auth-audience", audience]
    process, banner = _serve("--port", str(free_port()), *options)
    stderr = _stop(process)
    assert "serving" in banner, stderr
    warnings = [line for line in stderr.splitlines() if "WARNING" in line]
    if audience is None:
        assert len(warnings) == 1, stderr
        assert "--auth-audience" in warnings[0] and "admin" in warnings[0]
    else:
        assert warnings == []


def test_a_short_secret_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"short")
    (tmp_path / "secret").chmod(0o600)  # else serve warns
    result = subprocess.run(
        [*AGENTCAST, "serve", "--port", "0", "--auth-secret-file", str(tmp_path / "secret")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"agentcast serve: error: cannot load the --auth-* key: {tmp_path / 'secret'}: "
        "an HS256 secret must be at least 32 bytes"
    ]
