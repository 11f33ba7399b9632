"""``agentcast bench``: flags, checks, and the run from sweep to table, JSON and plot, or
``--plan``'s sweeps one after another.

Kept apart from ``agentcast.cli`` so that ``agentcast serve`` never imports
the benchmark's peers; this module itself imports only the standard library
until ``run``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import NoReturn, TextIO

from agentcast.argtypes import POSITIVE, POSITIVE_INT, number_in
from agentcast.bench.harness import CpuPlan, plan_cpus, raise_fd_limit
from agentcast.bench.peers import NAMES, parse_spec
from agentcast.bench.receivers import RECEIVERS
from agentcast.bench.workloads import WORKLOADS, Settings, Workload
from agentcast.extras import MissingExtra, require

FD_MARGIN = 128  # descriptors a process needs besides its clients' sockets
APART = ("chat",)  # not in "all": it needs MemGPT-protocol servers (agentcast, memgpt, --url)
URL_WORKLOADS = ("burst", "chat")  # what --url runs: burst counts frames, chat sends requests
MIN_SIZE, MAX_SIZE = 100, 1 << 20


_size = number_in(
    int, f"a size of {MIN_SIZE}-{MAX_SIZE} bytes", lambda n: MIN_SIZE <= n <= MAX_SIZE
)
_share = number_in(float, "a share of 0-1", lambda share: 0 <= share <= 1)
_pace = number_in(float, "a share above 0 and below 1", lambda share: 0 < share < 1)


def _servers(text: str) -> list[str]:
    specs = list(dict.fromkeys(spec.strip() for spec in text.split(",")))
    for spec in specs:
        try:
            parse_spec(spec)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return specs


def _client_counts(text: str) -> list[int]:
    try:
        counts = [POSITIVE_INT(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected client counts of at least 1 like 10,100,1000, got {text!r}"
        ) from None
    return list(dict.fromkeys(counts))


def _workloads(text: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",")))
    if names == ["all"]:
        return [name for name in WORKLOADS if name not in APART]
    for name in names:
        if name not in WORKLOADS:
            choices = ", ".join([*WORKLOADS, "all"])
            raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from {choices})")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's flags."""
    parser.add_argument(
        "--servers",
        type=_servers,
        default=None,
        help=f"comma-separated, from {', '.join(NAMES)} (default: agentcast,websockets;"
        " for --workload chat: agentcast,memgpt);"
        " agentcast takes settings: agentcast:flush_interval=0.02:max_batch_bytes=65536,"
        " agentcast:backplane=redis://127.0.0.1:6379/0:workers=2,"
        " agentcast:lag_threshold=4096:notsent_lowat=16384 (the kernel holds 16 KiB unsent"
        " per event stream client, not up to 4 MiB: laggards' deltas merge early);"
        " memgpt:end_pause=0 (MemGPT"
        " sleeps 1 s before agent_response_end); every server but socketify takes :tls (wss://)",
    )
    parser.add_argument(
        "--clients",
        type=_client_counts,
        default=[10, 100, 1000],
        metavar="N,N,...",
        help="client counts to sweep (default: 10,100,1000)",
    )
    parser.add_argument("--messages", type=POSITIVE_INT, default=2000, help="per burst")
    parser.add_argument("--size", type=_size, default=200, help="message bytes")
    parser.add_argument("--rate", type=POSITIVE, default=1000.0, help="msg/s (latency)")
    parser.add_argument(
        "--duration", type=POSITIVE, default=5.0, help="seconds (latency, headroom)"
    )
    parser.add_argument(
        "--workload",
        type=_workloads,
        default="burst",
        help=f"what to measure, comma-separated, from {', '.join(WORKLOADS)} (or all: every one"
        f" but {','.join(APART)}); tokens: agents stream runs of token deltas to"
        " native-protocol watchers, some of them laggards, every watcher's text checked, keepers'"
        " p99 with and without the laggards (two runs a round); tokens-v1: stamped token-sized"
        " events counted by the compiled receivers, for 10,000 connections and more",
    )
    parser.add_argument(
        "--crowd",
        type=POSITIVE_INT,
        default=100,
        help="agents workload: half the clients watch an agent each, the other half agents"
        " of this many watchers (default 100)",
    )
    parser.add_argument(
        "--watchers",
        type=POSITIVE_INT,
        default=100,
        help="tokens, tokens-v1 workloads: watchers per agent; clients / watchers agents"
        " (default 100)",
    )
    parser.add_argument(
        "--token-rate",
        type=POSITIVE,
        default=50.0,
        help="tokens workload: events/s each agent streams, nearly all deltas of 3-20 B of"
        " text (default 50, a model's tokens/s)",
    )
    parser.add_argument(
        "--laggards",
        type=_share,
        default=0.1,
        help="tokens workload: the share of each agent's watchers that lag, spread among"
        " them (default 0.1; 0: none, and the two runs of a round are alike)",
    )
    parser.add_argument(
        "--laggard-pace",
        type=_pace,
        default=0.25,
        help="tokens workload: a laggard reads this share of its stream's bytes a second,"
        " until 2 s after the last publish (default 0.25)",
    )
    parser.add_argument("--rounds", type=POSITIVE_INT, default=3, help="report the median")
    parser.add_argument(
        "--receivers", type=POSITIVE_INT, default=None, help="receiver processes (cores - 1)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="write the results as JSON"
    )
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PATH", help="draw the results as a PNG"
    )
    parser.add_argument(
        "--receiver",
        choices=RECEIVERS,
        default=RECEIVERS[0],
        help="compiled: epoll and frames walked in C, latency from every delivery (TLS read"
        " by Python, walked in C); python: the reference, latency from every 10th connection",
    )
    parser.add_argument(
        "--replot",
        type=Path,
        default=None,
        metavar="JSON",
        help="draw --plot from a run saved with --json instead of running one",
    )
    parser.add_argument(
        "--url",
        default=None,
        help="an already running server: --workload burst counts the frames its clients get,"
        " --workload chat sends it MemGPT requests",
    )
    parser.add_argument(
        "--plan",
        type=Path,
        default=None,
        metavar="FILE",
        help="run the sweeps FILE lists, one a line, each line this command's flags"
        " (# comments); every line is checked before any runs",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write what is printed on stdout (the tables, not the progress) to FILE",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="on stderr",
    )


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Flag combinations argparse cannot check; each is a one-line error, exit 2."""
    if args.url is not None:
        if args.servers is not None:
            parser.error("--url and --servers exclude each other")
        if len(args.workload) != 1 or args.workload[0] not in URL_WORKLOADS:
            parser.error(
                "--url supports only --workload burst (frame counting) or chat (MemGPT "
                "requests): the other workloads need a server that agentcast bench starts"
            )
        from agentcast.bench.observe import parse_url, reachable

        try:
            reachable(*parse_url(args.url)[:2])
        except (ValueError, OSError) as exc:
            parser.error(f"--url: {exc}")
    if args.plot is not None:
        try:
            require("matplotlib", "bench", "--plot")
        except MissingExtra as exc:
            parser.error(str(exc))


def _placement(plan: CpuPlan, clients: int, server: bool) -> list[str]:
    """Where things run (the server only when the bench starts one), and a note when the
    open-file limit is too low for ``clients``."""
    lines = []
    if plan.pinned:
        cpus = ",".join(str(cpu) for cpu in dict.fromkeys(plan.receivers))
        receivers = f"{len(plan.receivers)} receiver process(es) on CPU {cpus}"
        lines.append(f"server on CPU {plan.server}, {receivers}" if server else receivers)
    elif server:
        lines.append("one CPU: server and receivers are not pinned and share it")
    else:
        lines.append("one CPU: the receivers are not pinned")
    limit = raise_fd_limit()
    if limit < clients + FD_MARGIN:
        lines.append(
            f"note: the open-file limit is {limit:,} (hard limit); {clients:,} clients need "
            f"about {clients + FD_MARGIN:,} per process: raise it (ulimit -Hn) or lower --clients"
        )
    return lines


def _replot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Draw ``--plot`` from the document ``--replot`` names."""
    from agentcast.bench.plot import plot

    if args.plot is None:
        parser.error("--replot needs --plot PATH: where to write the PNG")
    try:
        document = json.loads(args.replot.read_text())
        plot(document, args.plot)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"--replot {args.replot}: not a run saved with --json ({exc})")
    return 0


class _Output:
    """Lines for stdout, written to the ``--report`` file as well when there is one, each as
    it comes, so that an interrupted run keeps what it printed."""

    def __init__(self, report: Path | None, parser: argparse.ArgumentParser) -> None:
        self._file: TextIO | None = None
        if report is not None:
            try:
                report.parent.mkdir(parents=True, exist_ok=True)
                self._file = report.open("w")
            except OSError as exc:
                parser.error(f"--report {report}: {exc.strerror or exc}")

    def __enter__(self) -> _Output:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        if self._file is not None:
            self._file.write(text + "\n")
            self._file.flush()


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        messages=args.messages,
        size=args.size,
        rate=args.rate,
        duration=args.duration,
        rounds=args.rounds,
        receiver=args.receiver,
        crowd=args.crowd,
        watchers=args.watchers,
        token_rate=args.token_rate,
        laggards=args.laggards,
        laggard_pace=args.laggard_pace,
    )


def _targets(args: argparse.Namespace) -> tuple[dict[str, Workload], list[str]]:
    """The workloads and servers of a run: ``--url``'s server, or those it starts."""
    if args.url is not None:
        from agentcast.bench.observe import observe

        workloads: dict[str, Workload] = (
            {"observe": observe} if args.workload == ["burst"] else {"chat": WORKLOADS["chat"]}
        )
        return workloads, [args.url]
    servers = args.servers or (
        ["agentcast", "memgpt"] if args.workload == ["chat"] else ["agentcast", "websockets"]
    )
    return {name: WORKLOADS[name] for name in args.workload}, servers


def _cells(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """The (workload, server, clients) cells a run will measure."""
    workloads, servers = _targets(args)
    return list(itertools.product(workloads, servers, args.clients))


def _sweep(args: argparse.Namespace, out: _Output, command: list[str], label: str = "") -> int:
    """One sweep: its tables and notes to ``out``, its ``--json`` and ``--plot``; 1 when a
    cell failed, else 0. ``label`` starts each cell's progress line."""
    from agentcast.bench import peer_ratios, report, tls_ratios
    from agentcast.bench.plot import plot
    from agentcast.bench.progress import display_for
    from agentcast.bench.sweep import run_sweep

    settings = _settings(args)
    cpus = plan_cpus(args.receivers)
    for line in _placement(cpus, max(args.clients), server=args.url is None):
        print(line, file=sys.stderr)
    workloads, servers = _targets(args)
    display = display_for(sys.stderr)
    sweep = run_sweep(workloads, servers, args.clients, settings, cpus, display, label)
    for line in [
        *report.tables(sweep, settings),
        *tls_ratios.table(sweep),
        *peer_ratios.table(sweep),
    ]:
        out.line(line)
    if notes := report.notes(sweep):
        out.line()
        for line in notes:
            out.line(line)
    document = report.document(sweep, settings, cpus, command)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.plot is not None and any(c.error is None and c.rounds for c in sweep.cells):
        plot(document, args.plot)
    return 1 if any(cell.error is not None for cell in sweep.cells) else 0


class _LineParser(argparse.ArgumentParser):
    """The bench's flags for one line of a plan: an error raises, for ``read_plan`` to name
    the line, instead of ending the process."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


NOT_IN_A_PLAN = {"plan": "--plan", "report": "--report", "url": "--url", "replot": "--replot"}


def _parse_line(words: list[str]) -> argparse.Namespace:
    """A plan line's flags, parsed and checked as ``agentcast bench`` checks its own."""
    parser = _LineParser(prog="agentcast bench", add_help=False)
    add_arguments(parser)
    args = parser.parse_args(words)
    for dest, flag in NOT_IN_A_PLAN.items():
        if getattr(args, dest) is not None:
            raise ValueError(f"{flag} cannot be used in a plan's line")
    _check(args, parser)
    return args


def _flags_beside_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The sweep flags given with ``--plan`` (set to other than their defaults)."""
    defaults = vars(parser.parse_args([]))
    beside = {"plan", "report", "log_level"}
    return [
        "--" + dest.replace("_", "-")
        for dest, default in defaults.items()
        if dest not in beside and getattr(args, dest) != default
    ]


def _run_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Every sweep of ``--plan`` in turn, each under a heading with its command; 1 when a
    cell failed, else 0. Interrupted, it says which sweep it was in (what finished is kept)."""
    from agentcast.bench.plan import PlanError, cell_seconds, read_plan, spoken

    if flags := _flags_beside_plan(args, parser):
        parser.error(
            f"--plan takes its sweeps' flags from its lines, not {', '.join(flags)}"
            " (beside it: --report, --log-level)"
        )
    try:
        lines = read_plan(args.plan, _parse_line)
    except PlanError as exc:
        parser.error(str(exc))
    cells = [(cell, _settings(line.args)) for line in lines for cell in _cells(line.args)]
    estimate = sum(cell_seconds(*cell, settings) for cell, settings in cells)
    started = time.monotonic()
    status = 0
    with _Output(args.report, parser) as out:
        out.line(f"agentcast bench --plan {args.plan}: {len(lines)} sweeps, {len(cells)} cells")
        print(f"estimated run time: about {spoken(estimate)}", file=sys.stderr)
        for index, line in enumerate(lines, 1):
            label = f"[{index}/{len(lines)}] "
            out.line()
            out.line(label + line.command)
            try:
                status |= _sweep(line.args, out, line.argv, label)
            except KeyboardInterrupt:
                out.line()
                out.line(
                    f"interrupted in sweep {index} of {len(lines)} after"
                    f" {spoken(time.monotonic() - started)}: the sweeps above it finished"
                )
                raise
        out.line()
        out.line(f"{len(lines)} sweeps, {len(cells)} cells in {spoken(time.monotonic() - started)}")
    return status


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the sweep (or ``--plan``'s sweeps); exit status 1 when any cell failed, 130 when
    interrupted (one line on stderr: the children ignore Ctrl-C and are stopped on the way
    out), else 0."""
    try:
        return _run(args, parser)
    except KeyboardInterrupt:
        print("agentcast bench: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.plan is not None:
        return _run_plan(args, parser)
    _check(args, parser)
    if args.replot is not None:
        return _replot(args, parser)
    with _Output(args.report, parser) as out:
        return _sweep(args, out, sys.argv)
