"""RFC 6455 to the letter, one rule per test, on raw sockets against the echo fixture.

The Autobahn cases (test_autobahn.py) check the same rules; these say which one broke.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Iterator
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentcast import Broadcaster
from echo_server import echo_server

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# What Firefox 128 sends to open a WebSocket, header for header, in its order.
FIREFOX_HEADERS = [
    ("Host", "127.0.0.1"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("Accept", "*/*"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Sec-WebSocket-Version", "13"),
    ("Origin", "http://127.0.0.1"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("Sec-WebSocket-Key", KEY),
    ("Connection", "keep-alive, Upgrade"),
    ("Sec-Fetch-Dest", "empty"),
    ("Sec-Fetch-Mode", "websocket"),
    ("Sec-Fetch-Site", "same-origin"),
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache"),
    ("Upgrade", "websocket"),
]
PLAIN_HEADERS = [
    ("Host", "127.0.0.1"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame; ``rsv`` is the 3 RSV bits (4: RSV1, 2: RSV2, 1: RSV3)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    return head + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


class RawClient:
    """A WebSocket client on a blocking socket: any header, any frame, nothing hidden."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def request(self, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str]]:
        """Send an upgrade request; return the status and the headers of the response."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self.sock.sendall(f"GET / HTTP/1.1\r\n{lines}\r\n".encode())
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *fields = head.decode().split("\r\n")
        response = dict(field.split(": ", 1) for field in fields)
        return int(status_line.split()[1]), {k.lower(): v for k, v in response.items()}

    def upgrade(self, headers: list[tuple[str, str]] = PLAIN_HEADERS) -> None:
        status, response = self.request(headers)
        assert status == 101, (status, response)
        accept = base64.b64encode(hashlib.sha1(KEY.encode() + GUID).digest()).decode()
        assert response["sec-websocket-accept"] == accept

    def send(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> None:
        self.sock.sendall(frame(opcode, payload, fin, rsv))

    def receive(self) -> tuple[int, bytes]:
        """The next server frame as (opcode, payload)."""
        self._need(2)
        opcode, size = self._buffer[0] & 0x0F, self._buffer[1] & 0x7F
        start = 2
        if size >= 126:
            width = 2 if size == 126 else 8
            self._need(2 + width)
            size, start = int.from_bytes(self._buffer[2 : 2 + width], "big"), 2 + width
        self._need(start + size)
        payload = self._buffer[start : start + size]
        self._buffer = self._buffer[start + size :]
        return opcode, payload

    def receive_close(self) -> bytes:
        """The payload of the server's close frame, which must be the next frame."""
        opcode, payload = self.receive()
        assert opcode == CLOSE, (opcode, payload)
        return payload

    def _need(self, size: int) -> None:
        while len(self._buffer) < size:
            self._fill()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk


def close_code(payload: bytes) -> int:
    assert len(payload) >= 2, payload
    return int.from_bytes(payload[:2], "big")


@pytest.fixture
def client(echo: Broadcaster) -> Iterator[RawClient]:
    raw = RawClient(echo.port)
    yield raw
    raw.close()


@pytest.fixture
def connected(client: RawClient) -> RawClient:
    client.upgrade()
    return client


# ---- RFC 6455 8.1: text must be UTF-8, or the connection fails with 1007 ----------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",  # never in UTF-8
        b"ok \xc0\xaf",  # overlong "/"
        b"\xed\xa0\x80",  # surrogate U+D800
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"cut \xe2\x82",  # ends inside a code point
    ],
)
def test_text_that_is_not_utf8_fails_the_connection_with_1007_undelivered(
    connected: RawClient, payload: bytes
) -> None:
    connected.send(TEXT, payload)
    assert close_code(connected.receive_close()) == 1007  # no echo before it


def test_invalid_utf8_fails_fast_on_the_fragment_that_makes_it_invalid(
    connected: RawClient,
) -> None:
    connected.send(TEXT, "κόσμε".encode(), fin=False)
    connected.send(CONTINUATION, "κόσμε".encode() + b"\xed\xa0\x80", fin=False)  # a surrogate
    # The message is not finished: the close comes for the bad fragment itself.
    assert close_code(connected.receive_close()) == 1007


def test_a_message_ending_inside_a_code_point_fails_at_its_last_fragment(
    connected: RawClient,
) -> None:
    connected.send(TEXT, b"euro \xe2", fin=False)
    connected.send(CONTINUATION, b"\x82", fin=True)
    assert close_code(connected.receive_close()) == 1007


def test_a_code_point_split_across_fragments_passes(connected: RawClient) -> None:
    text = "€ and 𝄞".encode()  # 3- and 4-byte code points
    cuts = [1, 2, 7, 8, 9]  # inside the euro sign and inside the clef
    pieces = [text[a:b] for a, b in pairwise([0, *cuts, len(text)])]
    for i, piece in enumerate(pieces):
        connected.send(TEXT if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
    assert connected.receive() == (TEXT, text)


def test_a_long_ascii_text_with_one_bad_byte_at_the_end_fails(connected: RawClient) -> None:
    connected.send(TEXT, b"a" * 1000 + b"\x80")  # past the 8-byte ASCII fast path
    assert close_code(connected.receive_close()) == 1007


TEXTS = st.one_of(
    st.binary(max_size=24),
    st.text(max_size=12).map(str.encode),
    st.text(min_size=1, max_size=12).map(str.encode).map(lambda b: b[:-1]),  # cut short
)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, cuts=st.lists(st.integers(0, 48), max_size=4))
def test_the_verdict_on_any_fragmented_text_is_pythons(text: bytes, cuts: list[int]) -> None:
    """Python's decoder is the oracle: echoed if it decodes, else closed 1007, wherever
    the fragments are cut."""
    bounds = sorted({0, len(text), *(cut for cut in cuts if cut < len(text))})
    pieces = [text[a:b] for a, b in pairwise(bounds)] or [b""]
    frames = [
        frame(TEXT if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]
    try:
        text.decode("utf-8")
        expected: tuple[int, bytes] = (TEXT, text)
    except UnicodeDecodeError:
        expected = (CLOSE, (1007).to_bytes(2, "big"))
    with echo_server() as hub:
        raw = RawClient(hub.port)
        try:
            raw.upgrade()
            raw.sock.sendall(b"".join(frames))
            opcode, payload = raw.receive()
        finally:
            raw.close()
    assert (opcode, payload[:2] if opcode == CLOSE else payload) == expected


# ---- RFC 6455 5.2: RSV bits without a negotiated extension fail with 1002 ----------------


@pytest.mark.parametrize(("opcode", "rsv"), [(TEXT, 4), (TEXT, 2), (BINARY, 1), (PING, 6)])
def test_rsv_bits_without_an_extension_fail_the_connection_with_1002_undelivered(
    connected: RawClient, opcode: int, rsv: int
) -> None:
    connected.send(opcode, b"hello", rsv=rsv)
    assert close_code(connected.receive_close()) == 1002  # no echo, no pong before it


def test_a_message_before_the_bad_frame_is_echoed_first(connected: RawClient) -> None:
    # One read holds both: the echo is still queued in the core when the bad frame comes.
    connected.sock.sendall(frame(TEXT, b"first") + frame(TEXT, b"second", rsv=2))
    assert connected.receive() == (TEXT, b"first")
    assert close_code(connected.receive_close()) == 1002


def test_a_ping_gets_its_pong(connected: RawClient) -> None:
    connected.send(PING, b"are you there")
    assert connected.receive() == (PONG, b"are you there")


# ---- RFC 6455 5.5.1, 7.4: close frames ----------------------------------------------------


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_an_invalid_close_code_is_answered_1002(connected: RawClient, code: int) -> None:
    connected.send(CLOSE, code.to_bytes(2, "big"))
    assert close_code(connected.receive_close()) == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
def test_a_valid_close_code_is_echoed(connected: RawClient, code: int) -> None:
    connected.send(CLOSE, code.to_bytes(2, "big") + b"bye")
    assert close_code(connected.receive_close()) == code


def test_a_close_without_status_is_echoed_without_status(connected: RawClient) -> None:
    connected.send(CLOSE, b"")
    assert connected.receive_close() == b""  # never code 0 or 1005 on the wire


def test_a_close_of_one_byte_is_answered_1002(connected: RawClient) -> None:
    connected.send(CLOSE, b"\x03")
    assert close_code(connected.receive_close()) == 1002


def test_a_close_reason_that_is_not_utf8_is_answered_1007(connected: RawClient) -> None:
    connected.send(CLOSE, (1000).to_bytes(2, "big") + b"\xff\xfe")
    assert close_code(connected.receive_close()) == 1007


# ---- RFC 6455 4.2: the opening handshake --------------------------------------------------


def test_firefox_connects_and_echoes(client: RawClient) -> None:
    client.upgrade(FIREFOX_HEADERS)
    client.send(TEXT, b'{"hello": "firefox"}')
    assert client.receive() == (TEXT, b'{"hello": "firefox"}')


def test_connection_and_upgrade_need_only_include_their_token(client: RawClient) -> None:
    headers = replace(PLAIN_HEADERS, "Connection", "Upgrade, keep-alive")
    client.upgrade(replace(headers, "Upgrade", "WebSocket, h2c"))
    client.send(TEXT, b"[]")
    assert client.receive() == (TEXT, b"[]")


def replace(headers: list[tuple[str, str]], name: str, value: str | None) -> list[tuple[str, str]]:
    kept = [(n, v) for n, v in headers if n != name]
    return kept if value is None else [*kept, (name, value)]


@pytest.mark.parametrize("version", ["12", "8", "7", "14"])
def test_a_version_other_than_13_gets_426_naming_13(client: RawClient, version: str) -> None:
    status, response = client.request(replace(PLAIN_HEADERS, "Sec-WebSocket-Version", version))
    assert (status, response.get("sec-websocket-version")) == (426, "13")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(replace(PLAIN_HEADERS, "Host", None), id="no Host"),
        pytest.param([*PLAIN_HEADERS, ("Host", "example.com")], id="two Host"),
        pytest.param([*PLAIN_HEADERS, ("Sec-WebSocket-Key", KEY)], id="two keys"),
        pytest.param(replace(PLAIN_HEADERS, "Sec-WebSocket-Version", None), id="no version"),
    ],
)
def test_a_malformed_upgrade_gets_400(client: RawClient, headers: list[tuple[str, str]]) -> None:
    status, _ = client.request(headers)
    assert status == 400


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([("X-Big", "a" * 1_000_000)], id="1 MB header"),
        pytest.param([("X-Big", "a" * 20_000)], id="20 KB header"),
        pytest.param([(f"X-{i}", "v") for i in range(10_000)], id="10,000 headers"),
    ],
)
def test_a_request_head_over_16_kib_gets_431_and_is_counted(
    echo: Broadcaster, client: RawClient, extra: list[tuple[str, str]]
) -> None:
    """picows 2.3.1 reads at most 16 KiB of request head and dropped a longer one without
    a word (the client still sending saw a reset): the admission layer answers it 431,
    counts it, and the server goes on serving."""
    status, _ = client.request([*PLAIN_HEADERS, *extra])
    assert status == 431
    assert echo.stats()["upgrades_refused_head_size"] == 1
    other = RawClient(echo.port)
    try:
        other.upgrade()
        other.send(TEXT, b"[]")
        assert other.receive() == (TEXT, b"[]")
    finally:
        other.close()


def test_more_than_128_headers_under_16_kib_get_400(client: RawClient) -> None:
    status, _ = client.request([*PLAIN_HEADERS, *((f"X-{i}", "v") for i in range(200))])
    assert status == 400
