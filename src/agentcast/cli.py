"""``agentcast`` command line: ``serve`` the MemGPT-compatible server, be its ``client``,
or ``bench`` client scaling against other servers."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import NoReturn, TypeVar

from agentcast.app import AgentServer
from agentcast.auth import Authenticate, JWTAuthenticator
from agentcast.backends import DemoAgentServer, load_backend
from agentcast.client import DEFAULT_URL, run_client
from agentcast.loadgen import cli as bench_cli
from agentcast.logs import JsonFormatter
from agentcast.server import DEFAULT_MAX_MESSAGE_SIZE
from agentcast.tls import client_context, server_context
from agentcast.workers import Supervisor

log = logging.getLogger("agentcast.cli")

PUBLIC_CONNECTIONS_PER_IP = 256
PUBLIC_CONNECT_RATE = 20.0
T = TypeVar("T", int, float)

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {port}")
    return port


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="agentcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the MemGPT-compatible WebSocket server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8282)
    serve.add_argument(
        "--backend", default=None, help="module:attr of a backend factory (default: a demo agent)"
    )
    serve.add_argument(
        "--route",
        choices=["agent", "all"],
        default="agent",
        help="agent: clients get the agents they talk to; all: every client gets everything",
    )
    serve.add_argument("--max-clients", type=_positive, default=None)
    serve.add_argument(
        "--max-connections-per-ip",
        type=_count,
        default=None,
        metavar="N",
        help=f"connections one IP address may hold; the next gets HTTP 503 (0: no limit;"
        f" default {PUBLIC_CONNECTIONS_PER_IP} on a non-loopback --host, none on loopback,"
        " where a local reverse proxy or bench gives every client one address)",
    )
    serve.add_argument(
        "--max-connect-rate",
        type=_non_negative,
        default=None,
        metavar="PER_SECOND",
        help="new connections a second from one IP address, bursts up to"
        " --max-connections-per-ip; beyond, HTTP 429 (0: no limit;"
        f" default {PUBLIC_CONNECT_RATE:g} on a non-loopback --host, none on loopback)",
    )
    serve.add_argument(
        "--max-message-size",
        type=_positive,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="bytes of one client message; larger ones close the connection with 1009",
    )
    serve.add_argument(
        "--max-subscriptions",
        type=_positive,
        default=128,
        help="agents one connection may subscribe to; beyond: a too_many_subscriptions error",
    )
    serve.add_argument(
        "--slow-consumer",
        choices=["close", "skip"],
        default="close",
        help="a client over its byte budget: close it (1013) or skip messages and say so",
    )
    serve.add_argument(
        "--history", type=int, default=1000, help="messages kept per agent for resume (since)"
    )
    serve.add_argument(
        "--channel-ttl",
        type=float,
        default=300.0,
        help="seconds an agent nobody subscribes to keeps its history before it is freed",
    )
    serve.add_argument(
        "--history-total-bytes",
        type=_positive,
        default=256 * 1024 * 1024,
        help="history kept for all agents together; beyond, the least recently used lose theirs",
    )
    serve.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="Redis backplane (redis://host:port/db): every node serves every agent",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT); more than 1 needs --redis",
    )
    serve.add_argument("--reuse-port", action="store_true", help="let other processes share it")
    serve.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve /healthz, /readyz and /metrics (no token) on this plain-HTTP port instead",
    )
    serve.add_argument("--certfile", metavar="PATH", help="PEM certificate chain: serve wss://")
    serve.add_argument("--keyfile", metavar="PATH", help="its PEM private key (else in --certfile)")
    serve.add_argument(
        "--agent-threads", type=_positive, default=8, help="threads running agent steps"
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one JSON object a line on stderr, for log shippers",
    )
    _add_security_arguments(serve)
    client = commands.add_parser("client", help="chat with an agent from the terminal")
    client.add_argument("url", nargs="?", default=DEFAULT_URL)
    client.add_argument("--agent-id", required=True)
    client.add_argument("--cafile", metavar="PATH", help="PEM CA certificates to trust (wss://)")
    client.add_argument("--retries", type=_positive, default=5, help="reconnect attempts")
    client.add_argument("--backoff", type=float, default=0.5, help="first reconnect delay (s)")
    client.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    bench = commands.add_parser(
        "bench", help="measure fan-out as clients grow, against other servers"
    )
    bench_cli.add_arguments(bench)
    return parser


def _add_security_arguments(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("security (see the README's Security section)")
    keys = group.add_mutually_exclusive_group()
    keys.add_argument("--auth-secret-file", metavar="PATH", help="verify HS256 JWTs: the secret")
    keys.add_argument(
        "--auth-public-key", metavar="PATH", help="verify RS256/ES256 JWTs: a PEM public key"
    )
    keys.add_argument("--auth-jwks", metavar="PATH|URL", help="verify RS256/ES256 JWTs: a JWKS")
    group.add_argument("--auth-audience", default=None, help="required 'aud' claim")
    group.add_argument("--auth-issuer", default=None, help="required 'iss' claim")
    group.add_argument(
        "--allowed-origins",
        default="",
        metavar="GLOBS",
        help="browser origins allowed besides the server's own (comma-separated globs)",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback --host without authentication anyway",
    )


def _authenticator(args: argparse.Namespace) -> Authenticate | None:
    """The JWT verifier the ``--auth-*`` flags describe, or None."""
    options = {"audience": args.auth_audience, "issuer": args.auth_issuer}
    if args.auth_secret_file:
        return JWTAuthenticator.from_secret_file(args.auth_secret_file, **options)
    if args.auth_public_key:
        return JWTAuthenticator.from_public_key_file(args.auth_public_key, **options)
    if args.auth_jwks:
        return JWTAuthenticator.from_jwks(args.auth_jwks, **options)
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _per_ip(given: T | None, public_default: T, host: str) -> T | int:
    """A per-IP limit as given; by default on for a public ``host`` and off (0) on
    loopback, where every client of a local reverse proxy or bench shares one address."""
    if given is not None:
        return given
    return 0 if _is_loopback(host) else public_default


def _protected_mode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse to serve a non-loopback address open to anyone, unless ``--insecure``."""
    authenticated = args.auth_secret_file or args.auth_public_key or args.auth_jwks
    if authenticated or _is_loopback(args.host):
        return
    if not args.insecure:
        parser.error(
            f"refusing to serve {args.host} without authentication: anyone could read and"
            " drive every agent; pass --auth-secret-file, --auth-public-key or --auth-jwks,"
            " or --insecure to serve it open"
        )
    log.warning(
        "serving %s with no authentication (--insecure): anyone can read and drive every agent",
        args.host,
    )


def _worker_argv(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: this one, as a single process sharing the port."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return [sys.executable, "-m", "agentcast", *kept, "--workers", "1", "--reuse-port"]


def supervise(args: argparse.Namespace, argv: Sequence[str], scheme: str) -> int:
    print(
        f"agentcast: {args.workers} workers on {scheme}://{args.host}:{args.port}/"
        " (Ctrl-C to stop)",
        flush=True,
    )
    return Supervisor(_worker_argv(argv), args.workers).run()


def serve(args: argparse.Namespace, tls: ssl.SSLContext | None = None) -> int:
    backend = DemoAgentServer if args.backend is None else load_backend(args.backend)
    try:
        authenticate = _authenticator(args)
    except (OSError, ValueError) as exc:
        print(f"agentcast: cannot load the --auth-* key: {exc}", file=sys.stderr)
        return 1
    connections_per_ip = _per_ip(args.max_connections_per_ip, PUBLIC_CONNECTIONS_PER_IP, args.host)
    server = AgentServer(
        backend,
        args.host,
        args.port,
        route=args.route,
        workers=args.agent_threads,
        max_clients=args.max_clients,
        max_connections_per_ip=connections_per_ip or None,
        max_connect_rate=_per_ip(args.max_connect_rate, PUBLIC_CONNECT_RATE, args.host),
        max_subscriptions=args.max_subscriptions,
        max_message_size=args.max_message_size,
        slow_consumer=args.slow_consumer,
        history_size=args.history,
        channel_ttl=args.channel_ttl,
        history_total_bytes=args.history_total_bytes,
        backplane=args.redis,
        reuse_port=args.reuse_port,
        authenticate=authenticate,
        allowed_origins=args.allowed_origins.split(","),
        ssl=tls,
        metrics_port=args.metrics_port,
    )
    # Blocked before any thread starts, so every thread inherits the mask and the signal
    # waits for sigwait() below. Left to a handler, a SIGTERM delivered to another thread
    # would not wake a main thread blocked on a lock, and the server would never stop.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        server.start()
    except ConnectionError as exc:  # the backplane's Redis does not answer
        print(f"agentcast: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"agentcast: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    address = f"{args.host}:{server.port}/"
    ws, page = ("ws", "http") if tls is None else ("wss", "https")
    print(
        f"agentcast serving {ws}://{address}, the live page on {page}://{address} (Ctrl-C to stop)",
        flush=True,
    )
    signal.sigwait(STOP_SIGNALS)
    log.info("stopping: %s", server.hub.stats())
    server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if getattr(args, "log_format", "text") == "json":  # serve's option only
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    if args.log_level != "DEBUG":  # picows logs every connect and disconnect at INFO
        logging.getLogger("picows").setLevel(logging.WARNING)
    if args.command == "client":
        return _client(args, parser)
    if args.command == "bench":
        return bench_cli.run(args, parser)
    _protected_mode(args, parser)
    if args.keyfile is not None and args.certfile is None:
        parser.error("--keyfile needs --certfile")
    try:
        tls = None if args.certfile is None else server_context(args.certfile, args.keyfile)
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers > 1:
        if args.metrics_port is not None:
            parser.error("--metrics-port serves one process: it cannot be combined with --workers")
        if args.redis is None:
            parser.error(
                f"--workers {args.workers} needs --redis URL: without a backplane, clients on"
                " one worker would not see the agents running on another"
            )
        if args.port == 0:
            parser.error("--workers needs a fixed --port: each worker would pick its own")
        return supervise(args, argv, "ws" if tls is None else "wss")
    try:
        return serve(args, tls)
    except ValueError as exc:  # a bad --backend or setting
        parser.error(str(exc))


def _client(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    tls = None
    if args.cafile is not None:
        if not args.url.startswith("wss://"):
            parser.error("--cafile needs a wss:// URL")
        try:
            tls = client_context(args.cafile)
        except ValueError as exc:
            parser.error(str(exc))
    return run_client(args.url, args.agent_id, args.retries, args.backoff, tls)
