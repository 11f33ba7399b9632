"""Logs: a line per connect and disconnect, client faults never at ERROR, JSON lines."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import jwt
import pytest
import websockets
from websockets.sync.client import connect as websockets_connect

from agentcast import Broadcaster
from agentcast.memgpt import protocol
from agentcast.memgpt.app import AgentServer
from agentcast.serve.auth import JWTAuthenticator
from agentcast.serve.logs import ClientFaultLog
from clients import run
from jwks_server import KEY_TYPES, jwks, serving_jwks
from redis_server import free_port
from test_auth import upgrade_status
from test_http import get
from test_rfc6455 import BINARY, CLOSE, TEXT, RawClient, close_code, frame

RESERVED_OPCODE = 0x3
# Malformed frames, each with the close code it earns and whether picows' parser (rather
# than agentcast's listener) finds the fault.
HOSTILE_FRAMES = [
    (frame(RESERVED_OPCODE, b""), 1002, True),
    (bytes([0x80 | TEXT, 2]) + b"hi", 1002, True),  # unmasked
    (frame(TEXT, b"\xff\xfe"), 1007, False),  # not UTF-8
    (frame(TEXT, b"hi", rsv=4), 1002, False),  # RSV1 without an extension
    (frame(CLOSE, (999).to_bytes(2, "big")), 1002, True),  # a close code nobody may send
]
LONG_REASON = "\x1b[31m" + "x" * 110  # a terminal escape, and more than an excerpt's length


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` (a record another thread logs) until it holds, for a bounded time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def records_with(caplog: pytest.LogCaptureFixture, key: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if hasattr(record, key)]


def test_connect_and_disconnect_are_logged_once_each_with_peer_code_reason_and_duration(
    echo: Broadcaster, connect: Callable[[int], RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentcast")
    client = connect(echo.port)
    host, port = client.sock.getsockname()
    local = f"{host}:{port}"
    wait_until(lambda: records_with(caplog, "peer"), "the connect line")
    client.send(CLOSE, (4000).to_bytes(2, "big") + LONG_REASON.encode())
    assert close_code(client.receive_close()) == 4000
    client.close()
    wait_until(lambda: records_with(caplog, "duration_s"), "the disconnect line")

    connected, disconnected = records_with(caplog, "peer")
    assert connected.levelno == disconnected.levelno == logging.INFO
    assert connected.peer == disconnected.peer == local  # type: ignore[attr-defined]
    assert connected.client_id == disconnected.client_id > 0  # type: ignore[attr-defined]
    assert local in connected.getMessage()
    assert disconnected.code == 4000  # type: ignore[attr-defined]
    assert disconnected.closed_by == "client"  # type: ignore[attr-defined]
    assert disconnected.duration_s >= 0  # type: ignore[attr-defined]
    for text in (disconnected.reason, disconnected.getMessage()):  # type: ignore[attr-defined]
        assert "x" * 65 not in text and "\x1b" not in text, text
    assert "\\x1b[31mxxx" in disconnected.reason  # type: ignore[attr-defined]


def test_a_connection_dropped_without_a_close_frame_is_logged_as_1006(
    echo: Broadcaster, connect: Callable[[int], RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentcast")
    client = connect(echo.port)
    client.close()
    wait_until(lambda: records_with(caplog, "duration_s"), "the disconnect line")
    (disconnected,) = records_with(caplog, "duration_s")
    assert (disconnected.code, disconnected.closed_by) == (1006, "nobody")  # type: ignore[attr-defined]


def test_a_server_close_is_logged_with_the_servers_code_and_reason(
    hub_factory: Callable[..., Broadcaster],
    connect: Callable[[int], RawClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agentcast")
    hub = hub_factory()  # no binary handler: a binary frame is closed with 1003
    client = connect(hub.port)
    client.send(BINARY, b"\x00")
    assert close_code(client.receive_close()) == 1003
    client.send(CLOSE, (1000).to_bytes(2, "big"))
    client.close()
    wait_until(lambda: records_with(caplog, "duration_s"), "the disconnect line")
    (disconnected,) = records_with(caplog, "duration_s")
    assert disconnected.code == 1003  # type: ignore[attr-defined]
    assert disconnected.closed_by == "server"  # type: ignore[attr-defined]
    assert disconnected.reason == "binary frames are not supported"  # type: ignore[attr-defined]


def test_no_connection_line_is_logged_when_info_is_off(
    echo: Broadcaster, connect: Callable[[int], RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentcast")
    client = connect(echo.port)
    client.send(TEXT, b'"hi"')
    assert client.receive() == (TEXT, b'"hi"')
    client.close()
    wait_until(lambda: echo.stats()["clients"] == 0, "the disconnect")
    assert not records_with(caplog, "peer")


def test_a_hostile_client_writes_no_error_line_and_its_faults_are_counted(
    echo: Broadcaster, connect: Callable[[int], RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="picows")
    caplog.set_level(logging.INFO, logger="agentcast")
    for data, code, _ in HOSTILE_FRAMES:
        client = connect(echo.port)
        client.sock.sendall(data)
        assert close_code(client.receive_close()) == code, data
    parser_faults = sum(found_by_picows for _, _, found_by_picows in HOSTILE_FRAMES)
    wait_until(
        lambda: echo.stats()["client_protocol_errors"] == len(HOSTILE_FRAMES),
        "the faults counted, picows' and the listener's",
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    demoted = [r for r in caplog.records if r.getMessage().startswith("WS parser error")]
    assert len(demoted) == parser_faults
    assert {r.levelno for r in demoted} == {logging.INFO}


def test_a_hostile_client_on_the_auth_and_refresh_paths_writes_no_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tokens, paths and headers nothing can decode, at the upgrade, on the token-checked
    GETs and in refreshes: each refused with its status or error frame and counted."""
    caplog.set_level(logging.INFO, logger="picows")
    caplog.set_level(logging.INFO, logger="agentcast")
    rsa_key = KEY_TYPES["RS256"]()
    good = jwt.encode({"sub": "a", "exp": int(time.time()) + 300}, rsa_key, "RS256", {"kid": "k1"})
    hostile_tokens = [
        jwt.encode({"sub": "a"}, KEY_TYPES["ES256"](), "ES256", {"kid": "k1"}),  # alg confusion
        "not.a.jwt",
        "e30.e30.",  # {} and {}: no alg
        "eyJhbGciOlsiUlMyNTYiXX0.e30.AA",  # "alg": ["RS256"], a list
    ]
    with (
        serving_jwks(jwks(("k1", rsa_key))) as jwks_url,
        AgentServer(port=0, authenticate=JWTAuthenticator.from_jwks(jwks_url.url)) as server,
    ):
        port = server.port
        for bad in hostile_tokens:
            assert upgrade_status(port, f"/?token={bad}") == 401, bad
            for path in ("/metrics", "/status"):  # the plain GETs that check a token
                assert get(port, f"{path}?token={bad}")[0] == 401, (path, bad)
        assert upgrade_status(port, "//[") == 401
        assert upgrade_status(port, f"/?token={good}", {"Origin": "http://["}) == 403

        async def refresh_with_hostile_tokens() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{port}/?token={good}") as client:
                for _ in range(50 // len(hostile_tokens) + 1):
                    for bad in hostile_tokens:
                        await client.send(protocol.refresh(bad).decode())
                        reply = json.loads(await asyncio.wait_for(client.recv(), 5))
                        assert reply["code"] == "unauthorized", reply

        run(refresh_with_hostile_tokens())
        stats = server.hub.stats()
    assert stats["auth_refused"] == 3 * len(hostile_tokens) + 1
    assert stats["origin_refused"] == 1
    assert stats["refresh_refused"] == (50 // len(hostile_tokens) + 1) * len(hostile_tokens)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_servers_own_faults_stay_at_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="picows")
    faults: list[None] = []
    log = ClientFaultLog(logging.getLogger("picows.test"), lambda: faults.append(None))
    log.exception("WS parser failure, initiate disconnect")
    log.error("Initiate disconnect because of exception from WSListener.on_ws_connected: x")
    log.error("WS parser error: %s, initiate disconnect", (1002, "bad opcode"))
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR, logging.INFO]
    assert len(faults) == 1


def test_serve_log_format_json_writes_one_object_a_line_with_the_connection_fields() -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "agentcast", "serve", "--port", str(port), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:  # its pipes closed and the process waited for on the way out
        try:
            assert process.stdout is not None and process.stderr is not None
            assert f"ws://127.0.0.1:{port}/" in process.stdout.readline()
            with websockets_connect(f"ws://127.0.0.1:{port}/") as client:
                local = "{}:{}".format(*client.socket.getsockname())
                client.close(4000, LONG_REASON)
            lines = []
            while not lines or "duration_s" not in lines[-1]:  # bounded by pytest's timeout
                lines.append(json.loads(process.stderr.readline()))
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=15)
            lines += [json.loads(line) for line in errors.splitlines()]
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    connected, disconnected = (line for line in lines if line.get("peer") == local)
    assert connected["level"] == "INFO" and connected["logger"] == "agentcast.server"
    assert connected["client_id"] == disconnected["client_id"] > 0
    assert disconnected["code"] == 4000 and disconnected["closed_by"] == "client"
    assert isinstance(disconnected["duration_s"], float)
    for text in (disconnected["reason"], disconnected["message"]):
        assert "x" * 65 not in text and "\x1b" not in text, text
