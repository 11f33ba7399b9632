"""The ``agentcast`` command line: ``serve`` the MemGPT-compatible server, be its
``client``, or ``bench`` client scaling against other servers."""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import os
import ssl
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any, NoReturn, TypeVar

from agentcast import __version__
from agentcast.argtypes import COUNT, NON_NEGATIVE, PORT, POSITIVE, POSITIVE_INT, number_in
from agentcast.backplane import require_redis
from agentcast.client.run import DEFAULT_URL, PROTOCOLS, run_client
from agentcast.client.urls import check_url
from agentcast.extras import MissingExtra
from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.backends import BadBackend, DemoAgentServer, load_backend
from agentcast.serve.auth import Authenticate, JWTAuthenticator
from agentcast.serve.broadcaster import DEFAULT_MAX_MESSAGE_RATE, LAG_THRESHOLD, MAX_CHANNELS
from agentcast.serve.logs import JsonFormatter
from agentcast.serve.server import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_NOTSENT_LOWAT
from agentcast.serve.tls import client_context, server_context
from agentcast.serve.workers import Supervisor

log = logging.getLogger("agentcast.cli")

PUBLIC_CONNECTIONS_PER_IP = 256
PUBLIC_CONNECT_RATE = 20.0
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
WORD_DELAY = number_in(float, "seconds from 0 to 10", lambda value: 0 <= value <= 10)
T = TypeVar("T", int, float)

DESCRIPTION = "Push an AI agent's messages to many WebSocket clients at once."
EPILOG = "Run 'agentcast COMMAND --help' for a command's options."
NO_COMMAND = (
    "agentcast: error: choose a command: serve, client or bench"
    " ('agentcast --help' says what each does)\n"
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default after its help, unless there is none to show (None, a
    flag's False) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, "") or "default" in text:
            return text
        return super()._get_help_string(action)

    def _split_lines(self, text: str, width: int) -> list[str]:
        """Wrapped at spaces only: a server spec, a URL or a flag is never cut in two (a
        word longer than the column runs past it)."""
        words = " ".join(text.split())
        return textwrap.wrap(words, width, break_long_words=False, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line and exit code 2; help shows the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _backend(spec: str) -> Any:
    """``--backend module:attr``: the factory, checked while the user's words are at hand.
    The module is looked for in the current directory first, as ``python -m`` would: the
    ``agentcast`` script's own directory stands in its place on ``sys.path``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return load_backend(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _redis_url(url: str) -> str:
    """``--redis URL``: refused at once when the redis extra is not installed."""
    try:
        require_redis()
    except MissingExtra as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return url


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line's parser; ``bench``'s own flags only when ``argv`` runs it: the
    benchmark (a third of the package) stays out of ``serve`` and ``client``."""
    parser = _Parser(prog="agentcast", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the MemGPT-compatible WebSocket server",
        description="Serve the MemGPT WebSocket protocol; SIGINT/SIGTERM close every"
        " client with 1001 and exit 0.",
    )
    serve.set_defaults(command_parser=serve)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; any but loopback needs --auth-* or --insecure",
    )
    serve.add_argument(
        "--port", type=PORT, default=8282, help="port to listen on; 0 picks a free one"
    )
    serve.add_argument(
        "--backend",
        type=_backend,
        default=None,
        metavar="MODULE:ATTR",
        help="a backend factory, e.g. mypkg.server:SyncServer (default: a demo agent)",
    )
    serve.add_argument(
        "--word-delay",
        type=WORD_DELAY,
        default=0.0,
        metavar="SECONDS",
        help="the demo agent's pause after each word (or piece of arguments) it streams:"
        " 0.05 is about an LLM's pace, 0 as fast as it can; not with --backend",
    )
    serve.add_argument(
        "--route",
        choices=["agent", "all"],
        default="agent",
        help="agent: clients get the agents they talk to; all: every client gets everything",
    )
    serve.add_argument(
        "--max-clients",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="connections served at once; the next gets HTTP 503 (default: no limit)",
    )
    serve.add_argument(
        "--max-connections-per-ip",
        type=COUNT,
        default=None,
        metavar="N",
        help=f"connections one IP address may hold; the next gets HTTP 503 (0: no limit;"
        f" default {PUBLIC_CONNECTIONS_PER_IP} on a non-loopback --host, none on loopback,"
        " where a local reverse proxy or bench gives every client one address)",
    )
    serve.add_argument(
        "--max-message-rate",
        type=NON_NEGATIVE,
        default=DEFAULT_MAX_MESSAGE_RATE,
        metavar="PER_SECOND",
        help="messages one client may send a second, bursts up to that many (pings and"
        " pongs count as one, each fragment after a message's first as 1/16); beyond,"
        " close 1008 (0: no limit, as for agentcast bench --workload chat)",
    )
    serve.add_argument(
        "--max-connect-rate",
        type=NON_NEGATIVE,
        default=None,
        metavar="PER_SECOND",
        help="new connections a second from one IP address, bursts up to"
        " --max-connections-per-ip; beyond, HTTP 429 (0: no limit;"
        f" default {PUBLIC_CONNECT_RATE:g} on a non-loopback --host, none on loopback)",
    )
    serve.add_argument(
        "--max-message-size",
        type=POSITIVE_INT,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="bytes of one client message; larger ones close the connection with 1009",
    )
    serve.add_argument(
        "--max-subscriptions",
        type=POSITIVE_INT,
        default=128,
        metavar="N",
        help="agents one connection may subscribe to; beyond: a too_many_subscriptions error",
    )
    serve.add_argument(
        "--slow-consumer",
        choices=["close", "skip"],
        default="close",
        help="a client over its byte budget: close it (1013) or skip messages and say so",
    )
    serve.add_argument(
        "--history",
        type=COUNT,
        default=1000,
        metavar="N",
        help="messages kept per agent, for clients resuming with since",
    )
    serve.add_argument(
        "--channel-ttl",
        type=POSITIVE,
        default=300.0,
        metavar="SECONDS",
        help="seconds an agent nobody subscribes to keeps its history before it is freed",
    )
    serve.add_argument(
        "--max-channels",
        type=POSITIVE_INT,
        default=MAX_CHANNELS,
        metavar="N",
        help="agents the server keeps at once; beyond, the least recently used unwatched one "
        "is freed (all watched: a too_many_channels error)",
    )
    serve.add_argument(
        "--history-total-bytes",
        type=POSITIVE_INT,
        default=256 * 1024 * 1024,
        metavar="BYTES",
        help="history kept for all agents together; beyond, the least recently used lose theirs",
    )
    serve.add_argument(
        "--lag-threshold",
        type=POSITIVE_INT,
        default=LAG_THRESHOLD,
        metavar="BYTES",
        help="unsent bytes a watcher may hold before what comes for it waits in the server, "
        "where its token deltas merge",
    )
    serve.add_argument(
        "--chat-api",
        default="/api/chat",
        metavar="PATH",
        help="the AI SDK's resume endpoint is GET PATH/{chat id}/stream (default: %(default)s)",
    )
    serve.add_argument(
        "--notsent-lowat",
        type=COUNT,
        default=DEFAULT_NOTSENT_LOWAT,
        metavar="BYTES",
        help="unsent bytes the kernel holds per event stream connection (TCP_NOTSENT_LOWAT): "
        "a slow watcher's deltas wait in the server and merge, for more server CPU; "
        "0 (the default): the kernel's own, up to 4 MiB",
    )
    serve.add_argument(
        "--max-run-bytes",
        type=POSITIVE_INT,
        default=8 * 1024 * 1024,
        metavar="BYTES",
        help="an agent's open run kept for watchers joining mid-run (and MemGPT's whole "
        "messages); beyond, joiners get history_trimmed",
    )
    serve.add_argument(
        "--redis",
        type=_redis_url,
        default=None,
        metavar="URL",
        help="Redis backplane (redis://host:port/db): every node serves every agent",
    )
    serve.add_argument(
        "--workers",
        type=POSITIVE_INT,
        default=1,
        metavar="N",
        help="server processes sharing the port (SO_REUSEPORT); more than 1 needs --redis",
    )
    serve.add_argument(
        "--reuse-port", action="store_true", help="let other processes share it (needs --redis)"
    )
    serve.add_argument(
        "--metrics-port",
        type=PORT,
        default=None,
        metavar="PORT",
        help="serve /healthz, /readyz and /metrics on this plain-HTTP port instead",
    )
    serve.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of --metrics-port (default 127.0.0.1: the operator's machine only)",
    )
    serve.add_argument("--certfile", metavar="PATH", help="PEM certificate chain: serve wss://")
    serve.add_argument("--keyfile", metavar="PATH", help="its PEM private key (else in --certfile)")
    serve.add_argument(
        "--agent-threads",
        type=POSITIVE_INT,
        default=8,
        metavar="N",
        help="threads running agent steps",
    )
    serve.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="on stderr")
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one JSON object a line on stderr, for log shippers",
    )
    _add_security_arguments(serve)
    client = commands.add_parser(
        "client",
        help="chat with an agent from the terminal",
        description="Type a line, see the agent's replies; Ctrl-D quits.",
    )
    client.set_defaults(command_parser=client)
    client.add_argument(
        "url", nargs="?", default=DEFAULT_URL, help="the server's ws:// or wss:// URL"
    )
    client.add_argument("--agent-id", required=True, help="the agent to talk to (required)")
    client.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="agentcast",
        help="agentcast: print the agent's runs as they stream (tokens, tool calls, a footer"
        " per run); memgpt: whole messages, for MemGPT's own servers",
    )
    client.add_argument("--cafile", metavar="PATH", help="PEM CA certificates to trust (wss://)")
    client.add_argument(
        "--token",
        default=os.environ.get("AGENTCAST_TOKEN") or None,
        help="a JWT, sent as an Authorization: Bearer header (default: $AGENTCAST_TOKEN;"
        " the variable keeps it out of ps and shell history)",
    )
    client.add_argument(
        "--retries", type=POSITIVE_INT, default=5, metavar="N", help="reconnect attempts"
    )
    client.add_argument(
        "--backoff",
        type=NON_NEGATIVE,
        default=0.5,
        metavar="SECONDS",
        help="first reconnect delay, doubled each attempt (agentcast: the longest, with"
        " jitter, up to 30 s)",
    )
    client.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS, help="on stderr")
    bench = commands.add_parser(
        "bench",
        help="measure fan-out as clients grow, against other servers",
        description="Measure deliveries/s, latency and memory as clients grow, for agentcast"
        " and other servers (see docs/benchmarks.md).",
    )
    bench.set_defaults(command_parser=bench)
    if argv[:1] == ["bench"]:
        from agentcast.bench import cli as bench_cli

        bench_cli.add_arguments(bench)
    return parser


def _add_security_arguments(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("security (see docs/security.md)")
    keys = group.add_mutually_exclusive_group()
    keys.add_argument("--auth-secret-file", metavar="PATH", help="verify HS256 JWTs: the secret")
    keys.add_argument(
        "--auth-public-key", metavar="PATH", help="verify RS256/ES256 JWTs: a PEM public key"
    )
    keys.add_argument("--auth-jwks", metavar="PATH|URL", help="verify RS256/ES256 JWTs: a JWKS")
    group.add_argument("--auth-audience", metavar="AUD", help="required 'aud' claim")
    group.add_argument("--auth-issuer", metavar="ISS", help="required 'iss' claim")
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


def _warn_of_any_audience(args: argparse.Namespace) -> None:
    """Once started with tokens but no ``--auth-audience``: say what that accepts."""
    if args.auth_audience is None:
        log.warning(
            "no --auth-audience: any token the key signs is accepted, tokens minted for other"
            " services included, and one with admin: true may drive every agent; set"
            " --auth-audience to the 'aud' your issuer puts in agentcast's tokens"
        )


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
        f"agentcast: {args.workers} workers serving {_url(scheme, args.host, args.port)};"
        " Ctrl-C to stop",
        flush=True,
    )
    started = time.monotonic()
    code = Supervisor(_worker_argv(argv), args.workers).run()
    print(f"agentcast: stopped after {time.monotonic() - started:.1f} s", flush=True)
    return code


def serve(
    args: argparse.Namespace,
    tls: ssl.SSLContext | None = None,
    authenticate: Authenticate | None = None,
) -> int:
    backend = args.backend
    if backend is None:
        backend = functools.partial(DemoAgentServer, word_delay=args.word_delay)
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
        max_message_rate=args.max_message_rate,
        slow_consumer=args.slow_consumer,
        history_size=args.history,
        channel_ttl=args.channel_ttl,
        history_total_bytes=args.history_total_bytes,
        lag_threshold=args.lag_threshold,
        notsent_lowat=args.notsent_lowat or None,
        chat_api=args.chat_api,
        max_run_bytes=args.max_run_bytes,
        max_channels=args.max_channels,
        backplane=args.redis,
        reuse_port=args.reuse_port,
        authenticate=authenticate,
        allowed_origins=args.allowed_origins.split(","),
        ssl=tls,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
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
    if authenticate is not None:
        _warn_of_any_audience(args)
    started = time.monotonic()
    listening = _listening(server, args, tls is not None)
    counters = server.serve_forever(ready=lambda: print(listening, flush=True))
    print(_stopped(time.monotonic() - started, counters), flush=True)
    return 0


def _url(scheme: str, host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{scheme}://{host}:{port}/"


def _listening(server: AgentServer, args: argparse.Namespace, secure: bool) -> str:
    """The one line saying where to connect, and where the page is."""
    ws_url = _url("wss" if secure else "ws", args.host, server.port)
    page = _url("https" if secure else "http", args.host, server.port)  # even with --metrics-port
    return f"agentcast: serving {ws_url} (page: {page}); Ctrl-C to stop"


def _stopped(seconds: float, counters: dict[str, int]) -> str:
    """The one line said on exit: how long, how much was published and delivered."""
    return (
        f"agentcast: stopped after {seconds:.1f} s: {_count(counters, 'published', 'message')}"
        f" published, {_count(counters, 'deliveries', 'delivery', 'deliveries')},"
        f" {_count(counters, 'clients', 'client')} closed with 1001 (going away)"
    )


def _count(counters: dict[str, int], key: str, one: str, many: str = "") -> str:
    value = counters.get(key, 0)
    return f"{value:,} {one if value == 1 else many or one + 's'}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        parser.exit(2, NO_COMMAND)
    command: argparse.ArgumentParser = args.command_parser
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if getattr(args, "log_format", "text") == "json":  # serve's option only
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    if args.log_level != "DEBUG":  # picows logs every connect and disconnect at INFO
        logging.getLogger("picows").setLevel(logging.WARNING)
    if args.command == "client":
        return _client(args, command)
    if args.command == "bench":
        from agentcast.bench import cli as bench_cli

        return bench_cli.run(args, command)
    _protected_mode(args, command)
    if args.word_delay and args.backend is not None:
        command.error("--word-delay paces the demo agent: it does nothing with --backend")
    if args.keyfile is not None and args.certfile is None:
        command.error("--keyfile needs --certfile")
    try:
        tls = None if args.certfile is None else server_context(args.certfile, args.keyfile)
    except ValueError as exc:
        command.error(str(exc))
    try:  # here, not in each worker: a bad key is one line, not workers dying in turn
        authenticate = _authenticator(args)
    except (OSError, ValueError) as exc:
        command.error(f"cannot load the --auth-* key: {exc}")
    if args.workers > 1:
        if args.metrics_port is not None:
            command.error("--metrics-port serves one process: it cannot be combined with --workers")
        if args.redis is None:
            command.error(
                f"--workers {args.workers} needs --redis URL: without a backplane, clients on"
                " one worker would not see the agents running on another"
            )
        if args.port == 0:
            command.error("--workers needs a fixed --port: each worker would pick its own")
        from agentcast.backplane.redis import check_reachable  # the redis extra is there

        try:
            check_reachable(args.redis)
        except ConnectionError as exc:  # as a single process says it, not once per worker
            print(f"agentcast: {exc}", file=sys.stderr)
            return 1
        return supervise(args, argv, "ws" if tls is None else "wss")
    if args.reuse_port and args.redis is None:
        command.error(
            "--reuse-port needs --redis URL: without a backplane, each process sharing the"
            " port would serve its own agents, unseen by clients of the others"
        )
    try:
        return serve(args, tls, authenticate)
    except BadBackend as exc:  # built, but not a backend
        command.error(f"argument --backend: {exc}")
    except ValueError as exc:  # a setting the server refuses
        command.error(str(exc))


def _client(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        check_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    tls = None
    if args.cafile is not None:
        if not args.url.startswith("wss://"):
            parser.error("--cafile needs a wss:// URL")
        try:
            tls = client_context(args.cafile)
        except ValueError as exc:
            parser.error(str(exc))
    return run_client(
        args.url, args.agent_id, args.retries, args.backoff, tls, args.protocol, args.token
    )
