"""``agentcast bench --plan FILE``: several sweeps read from a file, one per line, run in one
invocation, so that a page of results comes from one command on one quiet machine.

Each line holds the flags of one ``agentcast bench`` run, split as a shell would split
them (``#`` starts a comment). Every line is parsed and checked before the first runs, so
a typo on the last line costs nothing. Also the run time a plan is expected to take.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentcast.bench.peers import parse_spec
from agentcast.bench.workloads import FRONTIER_LOADS, IDLE_AGENT_SECONDS, Settings

# seconds, fitted to runs timed on the shared 2-core VM (a 30 s sweep, a 10,000-client cell,
# and the 11.5 min headline run of bench/sweep.json: each within 12 %); chat's are read
# from its code, not timed
CELL_START = 0.5  # spawn the server process, start it, stop it and its receivers
CONNECTS_PER_S = 800.0  # clients connected and registered per second
ROUND_EXTRA = 0.3  # a round's calls into the server and its drain, beyond its own length
BURST_PACE = 5e6  # deliveries/s of a burst, for its length
# the peers that send to each client in Python, whose bursts take minutes at 1,000 clients
# (their deliveries/s at 1,000 clients in bench/sweep.json, 2026-11-30)
SLOW_BURSTS = {"picows": 240e3, "websockets": 130e3, "memgpt": 35e3}
CHAT_START = 2.0  # ``agentcast serve`` or the memgpt peer as a command of its own
CHAT_ROUND_EXTRA = 2.0  # a chat round's client processes, warm-up request and last answers
TOKENS_RUN_EXTRA = 1.0  # a tokens run beyond its connects and length (12.6 s a run at 1,000, 10 s)


class PlanError(Exception):
    """Why a plan cannot run, in one line naming the file and, if one is to blame, the line."""


@dataclass(frozen=True)
class PlanLine:
    """One sweep of a plan: where it is in the file, its words, and them parsed."""

    number: int  # in the file, from 1
    words: list[str]
    args: argparse.Namespace

    @property
    def argv(self) -> list[str]:
        """The command that runs the same sweep on its own."""
        return ["agentcast", "bench", *self.words]

    @property
    def command(self) -> str:
        """``argv`` as a shell would take it."""
        return shlex.join(self.argv)


def read_plan(path: Path, parse: Callable[[list[str]], argparse.Namespace]) -> list[PlanLine]:
    """The sweeps of the plan at ``path``, each line's words parsed by ``parse``.

    ``parse`` raises ``ValueError`` (or argparse's ``ArgumentTypeError``) with a message;
    it is raised again as ``PlanError`` prefixed with the file and line number.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"--plan {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True)
            if words:
                lines.append(PlanLine(number, words, parse(words)))
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise PlanError(f"{path} line {number}: {exc}") from None
    if not lines:
        raise PlanError(f"{path}: no sweeps in it (one line of agentcast bench flags per sweep)")
    _written_once(path, lines)
    return lines


def _written_once(path: Path, lines: list[PlanLine]) -> None:
    """Refuse a plan two of whose lines write the same ``--json`` or ``--plot`` file: the
    later would overwrite the earlier's results."""
    writers: dict[Path, int] = {}
    for line in lines:
        for output in (line.args.json, line.args.plot):
            if output is None:
                continue
            if (first := writers.setdefault(output.resolve(), line.number)) != line.number:
                raise PlanError(f"{path} line {line.number}: line {first} writes {output} too")


def _connect_seconds(clients: int) -> float:
    return CELL_START + clients / CONNECTS_PER_S


def _headroom_seconds(clients: int, settings: Settings) -> float:
    """A headroom cell: idle readings before and after each round's busy window."""
    idle = min(settings.duration, IDLE_AGENT_SECONDS)
    return _connect_seconds(clients) + settings.rounds * (
        2 * idle + settings.duration + ROUND_EXTRA
    )


def _burst_pace(server: str) -> float:
    try:
        name = parse_spec(server)[0]
    except ValueError:  # --url's address
        return BURST_PACE
    return SLOW_BURSTS.get(name, BURST_PACE)


def cell_seconds(workload: str, server: str, clients: int, settings: Settings) -> float:
    """About how long one cell takes (a server that falls behind at a steady rate waits
    for its drain, but stops after that round: about as long)."""
    if workload == "burst":
        bursts = settings.rounds + 1  # and the warm-up, a burst of the rounds' size
        return (
            _connect_seconds(clients)
            + (settings.rounds + 1) * ROUND_EXTRA
            + bursts * clients * settings.messages / _burst_pace(server)
        )
    if workload == "headroom":
        return _headroom_seconds(clients, settings)
    if workload == "frontier":
        return len(FRONTIER_LOADS) * _headroom_seconds(clients, settings)
    if workload == "chat":
        return CHAT_START + settings.rounds * (settings.duration + CHAT_ROUND_EXTRA)
    if workload == "tokens":  # two runs a round, each its own server, laggards' tail
        run = _connect_seconds(clients) + settings.duration + TOKENS_RUN_EXTRA
        return settings.rounds * 2 * run
    if workload in ("latency", "agents", "tokens-v1", "observe"):
        return _connect_seconds(clients) + settings.rounds * (settings.duration + ROUND_EXTRA)
    return _connect_seconds(clients) + settings.rounds * ROUND_EXTRA  # publish, memory


def spoken(seconds: float) -> str:
    """``38.5 min``, or ``45 s`` for less than a minute."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
