"""A client closed for its message rate (1008) first gets the answers to every request the
server accepted before the limit: nothing it was told is taken back by the close."""

from __future__ import annotations

import orjson

from agentcast.memgpt import protocol
from agentcast.memgpt.app import AgentServer
from clients import masked_text, parse_frames, raw_upgrade


def test_150_subscribes_in_one_write_get_their_acks_then_1008() -> None:
    """All in one TCP write: the server reads them in one go, and the 1008 comes while the
    acks of the accepted ones are still queued (they went out after the close, unread)."""
    server = AgentServer(port=0).start()  # the default rate: 100 a second, bursts of 100
    try:
        sock = raw_upgrade(server.port)
        sock.sendall(b"".join(masked_text(protocol.subscribe(f"agent-{i}")) for i in range(150)))
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
        sock.close()
    finally:
        server.stop()
    frames = parse_frames(data)
    (close_opcode, close_payload) = frames.pop()
    assert (close_opcode, int.from_bytes(close_payload[:2], "big")) == (0x8, 1008)
    replies = [orjson.loads(payload) for _, payload in frames]
    assert 100 <= len(replies) < 150
    assert replies == [
        {"type": "command_response", "status": f"OK: subscribed to agent-{i}"}
        for i in range(len(replies))
    ]
