"""Per-agent authorization in AgentServer: nothing of an agent a client may not read
reaches it (live, replayed, route all), and nobody drives an agent it may not talk to."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import websockets

from agentcast.memgpt import protocol
from agentcast.memgpt.app import AgentServer
from agentcast.serve.auth import JWTAuthenticator, UpgradeRequest
from clients import DEMO_STEP, memgpt_exchange, run, user_message

SECRET = b"s" * 32


def token(sub: str, **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 300, **claims}, SECRET, "HS256")


@pytest.fixture
def server() -> Iterator[AgentServer]:
    with AgentServer(port=0, authenticate=JWTAuthenticator(secret=SECRET)) as server:
        yield server


def connect(server: AgentServer, jwt_token: str) -> Any:
    return websockets.connect(f"ws://127.0.0.1:{server.port}/?token={jwt_token}")


async def exchange(websocket: Any, payload: bytes | dict[str, Any]) -> list[dict[str, Any]]:
    return await memgpt_exchange(
        websocket, payload.decode() if isinstance(payload, bytes) else payload
    )


def is_forbidden(reply: dict[str, Any], agent_id: str | None) -> bool:
    return (
        reply["type"] == "server_error"
        and reply.get("code") == "forbidden"
        and reply["agent_id"] == agent_id
    )


def test_a_conversation_never_reaches_b_live_or_replayed(server: AgentServer) -> None:
    async def scenario() -> None:
        async with (
            connect(server, token("a", agents=["alice"])) as a,
            connect(server, token("b", agents=["bob*"])) as b,
            connect(server, token("c", watch=["ali*"])) as c,
        ):
            denied = await exchange(b, protocol.subscribe("alice"))
            assert len(denied) == 1 and is_forbidden(denied[0], "alice")
            secret = await exchange(a, user_message("my secret", "alice"))
            assert [r["type"] for r in secret] == DEMO_STEP
            # Replay after A has spoken: refused to B, served to a watcher.
            denied = await exchange(b, protocol.subscribe("alice", since=0))
            assert len(denied) == 1 and is_forbidden(denied[0], "alice")
            # B's next exchange comes after everything alice said, on the same ordered
            # path: had any of it been sent to B, it would come first.
            own = await exchange(b, user_message("hi", "bob1"))
            assert [r["type"] for r in own] == DEMO_STEP
            assert {r.get("agent_id") for r in own if r["type"] == "agent_response"} == {"bob1"}
            await c.send(protocol.subscribe("alice", since=0).decode())
            replay = [orjson.loads(await c.recv()) for _ in range(4)]
            assert replay[0]["type"] == "command_response"
            assert [r["type"] for r in replay[1:]] == ["agent_response"] * 3
            assert "my secret" in replay[1]["message"]

    run(scenario())


def test_b_cannot_drive_a_s_agent_and_stays_connected(server: AgentServer) -> None:
    async def scenario() -> None:
        async with (
            connect(server, token("a", agents=["alice"])) as a,
            connect(server, token("b", agents=["bob"], watch=["alice"])) as b,
        ):
            first = await exchange(a, user_message("one", "alice"))
            for request in (user_message("do evil", "alice"), user_message("x", "carol")):
                denied = await exchange(b, request)
                assert len(denied) == 1 and is_forbidden(denied[0], request["agent_id"])
            # No step ran for B's request: alice's next messages follow on from A's.
            second = await exchange(a, user_message("two", "alice"))
            seqs = [r["seq"] for r in first + second if r["type"] == "agent_response"]
            step = seqs[2] + 1  # a step is a run: 1 (run_start) .. step (run_end)
            assert seqs[3:] == [step + seq for seq in seqs[:3]]
            assert [r["type"] for r in await exchange(b, user_message("ok", "bob"))] == DEMO_STEP

    run(scenario())
    assert server.hub.stats()["forbidden"] == 2


def test_unsubscribe_and_create_agent_are_checked(server: AgentServer) -> None:
    async def scenario() -> None:
        async with (
            connect(server, token("b", agents=["bob"])) as b,
            connect(server, token("root", admin=True)) as root,
        ):
            denied = await exchange(b, protocol.unsubscribe("alice"))
            assert is_forbidden(denied[0], "alice")
            denied = await exchange(b, protocol.create_agent({"name": "x"}))
            assert is_forbidden(denied[0], None)
            created = await exchange(root, protocol.create_agent({"name": "x"}))
            assert created == [{"type": "command_response", "status": "OK: Agent initialized"}]
            assert (await exchange(root, protocol.subscribe("anyone", since=0)))[0]["type"] == (
                "command_response"
            )
            assert (await exchange(b, protocol.unsubscribe("bob")))[0]["type"] == (
                "command_response"
            )

    run(scenario())


def test_refusals_are_logged_once_per_connection(
    server: AgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with connect(server, token("b")) as b:
            for i in range(20):
                assert is_forbidden((await exchange(b, protocol.subscribe(f"x{i}")))[0], f"x{i}")

    with caplog.at_level(logging.WARNING, "agentcast.app"):
        run(scenario())
    refusals = [r for r in caplog.records if "not allowed" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert server.hub.stats()["forbidden"] == 20


def test_an_anonymous_identity_may_do_nothing() -> None:
    def anonymous(request: UpgradeRequest) -> None:
        return None

    with AgentServer(port=0, authenticate=anonymous) as server:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as websocket:
                denied = await exchange(websocket, user_message("hi", "alice"))
                assert is_forbidden(denied[0], "alice")

        run(scenario())


def test_route_all_is_refused_with_authentication(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="route 'all'"):
        AgentServer(port=0, route="all", authenticate=JWTAuthenticator(secret=SECRET))
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "secret").chmod(0o600)  # else serve warns
    auth = ["--auth-secret-file", str(tmp_path / "secret")]
    result = subprocess.run(
        [sys.executable, "-m", "agentcast", "serve", "--port", "0", "--route", "all", *auth],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "route 'all'" in result.stderr


def test_without_authentication_the_open_behaviour_stays() -> None:
    with AgentServer(port=0) as server:

        async def scenario() -> None:
            async with (
                websockets.connect(f"ws://127.0.0.1:{server.port}/") as a,
                websockets.connect(f"ws://127.0.0.1:{server.port}/") as b,
            ):
                await exchange(a, user_message("hello", "alice"))
                await b.send(protocol.subscribe("alice", since=0).decode())
                replay = [orjson.loads(await b.recv()) for _ in range(4)]
                assert [r["type"] for r in replay] == ["command_response"] + ["agent_response"] * 3
                assert replay[1]["seq"] < replay[2]["seq"] < replay[3]["seq"]

        run(scenario())
