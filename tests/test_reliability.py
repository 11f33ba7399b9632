"""Delivery guarantees under concurrency, and a live server under hostile input."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable

import orjson
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from picows import WSMsgType

from agent_server_process import ServerProcess
from agentcast import Broadcaster, notices
from agentcast.memgpt import protocol
from clients import (
    DEMO_STEP,
    FINAL,
    memgpt_exchange,
    picows_clients,
    run,
    user_message,
    wait_for,
)

THREADS = 8
PER_THREAD = 5_000


def test_seq_is_contiguous_and_each_thread_ordered(hub_factory: Callable[..., Broadcaster]) -> None:
    hub = hub_factory(history_size=0)
    ids: list[int] = []
    hub_ready = threading.Event()

    def publisher(thread: int) -> None:
        hub_ready.wait(10)
        for i in range(PER_THREAD):
            hub.publish({"t": thread, "i": i}, channel="one")

    async def scenario() -> list[list[dict]]:
        async with picows_clients(f"ws://127.0.0.1:{hub.port}/", 50) as clients:
            await wait_for(lambda: hub.client_count == 50)
            ids.extend(hub._thread.call(hub._core.client_ids))
            for cid in ids:
                hub.subscribe(cid, "one")
            hub_ready.set()
            threads = [threading.Thread(target=publisher, args=(t,)) for t in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total = THREADS * PER_THREAD
            await wait_for(lambda: all(len(c.messages) == total for c in clients), 60, "all")
            return [[orjson.loads(m) for m in c.messages] for c in clients]

    for stream in run(scenario()):
        assert [m["seq"] for m in stream] == list(range(1, THREADS * PER_THREAD + 1))
        for thread in range(THREADS):
            assert [m["i"] for m in stream if m["t"] == thread] == list(range(PER_THREAD))


def _json(value: object) -> bytes:
    return json.dumps(value).encode()  # stdlib: any int size, so the server sees those too


frames = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    ).map(_json),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["user_message", "command", "subscribe", "unsubscribe", "x"])},
        optional={
            "message": st.one_of(st.text(max_size=30), st.integers()),
            "agent_id": st.one_of(st.text(max_size=10), st.none(), st.integers()),
            "since": st.one_of(st.integers(-5, 10**20), st.text(max_size=3)),
            "command": st.text(max_size=12),
            "config": st.one_of(st.dictionaries(st.text(max_size=5), st.integers()), st.integers()),
        },
    ).map(_json),
)
raw_chunks = st.binary(min_size=1, max_size=64)


def test_hostile_input_never_hurts_the_control_client() -> None:
    """Random bytes, JSON, truncated/oversized/fragmented frames over many connections."""
    # A small history fills within the first half: what it keeps (bounded) is not counted
    # as growth. An agent event kept there holds about 0.6 KiB (its frames, its dict and the
    # object that builds each encoding's frame when first asked), a MemGPT frame alone 0.2.
    server = ServerProcess(max_message_size=4096, history_size=50)
    url = f"ws://127.0.0.1:{server.port}/"
    rss: list[int] = []
    try:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(frames, min_size=1, max_size=8), raw_chunks, st.booleans())
        def attack(payloads: list[bytes], garbage: bytes, oversize: bool) -> None:
            run(_attack(url, payloads, garbage, oversize, server))
            rss.append(server.status()[1])

        attack()
    finally:
        assert server.stop() == 0
    # Bounded memory: the server's RSS (KiB) grew by less than 256 KiB over the second half
    # (about 20 KiB here; keeping 1 KiB per message it grows about 400 KiB).
    half = len(rss) // 2
    assert max(rss[half:]) - max(rss[:half]) < 256, rss


BINARY_REPLY = orjson.loads(
    protocol.server_error("binary frames are not supported; send JSON text")
)


NOTICE_CODES = notices.GAP_CODES | {notices.SKIPPED}


def _is_answer(frame: dict) -> bool:
    """The one frame that ends the server's answer to a message (notices are not answers;
    an error with a code, such as bad_agent_id, is)."""
    return frame["type"] in FINAL and frame.get("code") not in NOTICE_CODES


def _error_reply(payload: bytes) -> dict | None:
    """The error frame a text message must get, or None if it is a valid request."""
    try:
        protocol.parse_client_message(payload)
    except protocol.ProtocolError as exc:
        return orjson.loads(exc.reply)
    return None


async def _attack(
    url: str, payloads: list[bytes], garbage: bytes, oversize: bool, server: ServerProcess
) -> None:
    await _send_garbage(url, garbage)
    await _send_frames(url, payloads, oversize)
    # The control client is served correctly throughout.
    async with websockets.connect(url) as control:
        replies = await asyncio.wait_for(memgpt_exchange(control, user_message("ok?", "c")), 5)
        assert [r["type"] for r in replies] == DEMO_STEP
    await wait_for(lambda: server.status()[0] == 0, 5, "attackers gone")


async def _send_garbage(url: str, garbage: bytes) -> None:
    """Raw bytes on a TCP connection that never completes a handshake: refused or closed."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(garbage)
        writer.write_eof()
        refusal = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert refusal == b"" or refusal.startswith(b"HTTP/1.1 4"), refusal


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


async def _send_frames(url: str, payloads: list[bytes], oversize: bool) -> None:
    """Arbitrary text (whole and fragmented) and binary frames: every message gets its
    answer (a bad one its own error frame). Then text that is not UTF-8 closes the
    connection with 1007 (RFC 6455), or else an oversize message closes it with 1009."""
    text = [payload for payload in payloads if _is_utf8(payload)]
    not_text = [payload for payload in payloads if not _is_utf8(payload)]
    async with picows_clients(url, 1) as (attacker,):
        assert attacker.transport is not None
        errors: Counter[bytes] = Counter()
        for payload in text:
            attacker.transport.send(WSMsgType.TEXT, payload[: len(payload) // 2], fin=False)
            attacker.transport.send(WSMsgType.CONTINUATION, payload[len(payload) // 2 :], fin=True)
            attacker.transport.send(WSMsgType.BINARY, payload)
            attacker.transport.send(WSMsgType.TEXT, payload)
            error = _error_reply(payload)
            for expected in ([error, error] if error else []) + [BINARY_REPLY]:
                errors[orjson.dumps(expected)] += 1
        for payload in not_text:
            attacker.transport.send(WSMsgType.BINARY, payload)
            errors[orjson.dumps(BINARY_REPLY)] += 1
        expected_answers = 3 * len(text) + len(not_text)

        def answers() -> list[dict]:
            return [f for f in map(orjson.loads, attacker.messages) if _is_answer(f)]

        await wait_for(lambda: len(answers()) >= expected_answers, 10, lambda: str(answers()))
        assert len(answers()) == expected_answers, answers()
        got = Counter(orjson.dumps(frame) for frame in answers())
        assert not errors - got, (errors - got, answers())
        if not_text:
            attacker.transport.send(WSMsgType.TEXT, not_text[0])
            await wait_for(lambda: attacker.close_code is not None, 5, "the 1007 close")
            assert attacker.close_code == 1007
        elif oversize:
            attacker.transport.send(WSMsgType.TEXT, b"x" * 5000)
            await wait_for(lambda: attacker.close_code is not None, 5, "the 1009 close")
            assert attacker.close_code == 1009
