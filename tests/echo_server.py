"""An echo server on agentcast's public API: the Autobahn cases' server under test.

Text comes back with ``send_json`` and binary with ``send_binary``, both on the
ordered path every publish takes. Run it by hand for kosoku:

    PYTHONPATH=src python tests/echo_server.py 9001
    kosoku -m fuzzingclient -x '12.*' -x '13.*' -o /tmp/autobahn 127.0.0.1:9001
"""

from __future__ import annotations

import signal
import sys
import threading

from agentcast import Broadcaster

# The 9.* cases send messages of up to 16 MiB, and 1,000 messages as fast as they can.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
CLIENT_BUDGET = 64 * 1024 * 1024


def echo_server(host: str = "127.0.0.1", port: int = 0) -> Broadcaster:
    """A Broadcaster (not started) that sends every message back to its sender."""
    hub: Broadcaster

    def echo_text(client_id: int, data: bytes) -> None:
        hub.send_json(client_id, data)

    def echo_binary(client_id: int, data: bytes) -> None:
        hub.send_binary(client_id, data)

    hub = Broadcaster(
        host,
        port,
        on_message=echo_text,
        on_binary=echo_binary,
        max_message_size=MAX_MESSAGE_SIZE,
        client_budget=CLIENT_BUDGET,
        max_message_rate=0,
    )
    return hub


if __name__ == "__main__":
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with echo_server(port=int(sys.argv[1]) if len(sys.argv) > 1 else 9001) as server:
        print(f"echo server on 127.0.0.1:{server.port}", flush=True)
        stopping.wait()
