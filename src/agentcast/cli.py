"""``agentcast`` command line: ``agentcast serve`` runs the broadcaster until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

import orjson

from agentcast.broadcaster import Broadcaster

log = logging.getLogger("agentcast.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run a WebSocket broadcaster that relays each client's JSON to every client"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8282)
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def serve(host: str, port: int) -> int:
    """Relay every JSON text message to all clients; answer anything else with an error frame."""
    hub: Broadcaster

    def relay(client_id: int, data: bytes) -> None:
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            hub.send(client_id, {"type": "server_error", "message": f"invalid JSON: {exc}"})
            return
        hub.publish_json(data)

    hub = Broadcaster(host, port, on_message=relay)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        hub.start()
    except OSError as exc:
        print(f"agentcast: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"agentcast serving ws://{host}:{hub.port}/ (Ctrl-C to stop)", flush=True)
    stopping.wait()
    log.info("stopping: %s", hub.stats())
    hub.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if not 0 <= args.port <= 65535:
        _parser().error(f"--port must be 0..65535, not {args.port}")
    return serve(args.host, args.port)
