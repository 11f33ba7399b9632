"""What each cell of a sweep is doing while it runs, so that a long cell is never silent.

Workloads and sessions report phases through ``Progress`` and know nothing of
how they are shown. The sweep shows them live on a terminal (``live.Live``, one
line per cell with a bar and the elapsed time, drawn by rich) or, for logs,
pipes and CI, as one plain line per phase change (``Lines``: no control
characters). ``display_for`` picks one for a stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TextIO


class Progress(Protocol):
    """Where a running cell reports what it is doing."""

    def phase(self, name: str, done: int | None = None, total: int | None = None) -> None:
        """The cell is now in ``name`` ("warm-up", "round 2/3"); calls with the same name
        and ``done`` of ``total`` are steps of one phase (connections opened). Cheap to
        call often: a display draws only what changed."""


class CellProgress(Progress, Protocol):
    def finish(self, outcome: str) -> None:
        """The cell ended: ``done``, ``error: ...`` or ``skipped: ...``."""


class Display(Protocol):
    """``with display:`` around a sweep; ``cell(label)`` as each cell starts."""

    def __enter__(self) -> Display: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def cell(self, label: str) -> CellProgress: ...


class Prefixed:
    """A ``Progress`` that names a part of its cell before each phase ("500 msg/s: round 1/3")."""

    def __init__(self, progress: Progress, prefix: str) -> None:
        self._progress = progress
        self._prefix = prefix

    def phase(self, name: str, done: int | None = None, total: int | None = None) -> None:
        self._progress.phase(f"{self._prefix}: {name}", done, total)


def tally(progress: Progress, name: str, total: int) -> Callable[[int], None]:
    """A callback for steps of a counted phase: reports ``name`` 0/``total`` now, then the
    running sum of the counts it is given."""
    done = 0

    def add(count: int) -> None:
        nonlocal done
        done += count
        progress.phase(name, done, total)

    add(0)
    return add


def describe(name: str, done: int | None, total: int | None) -> str:
    """``connecting 40/100``, ``warm-up``."""
    return name if total is None else f"{name} {done or 0:,}/{total:,}"


class Lines:
    """One plain line per phase change: for a stream that is not a terminal.

    A counted phase is written when it starts and when it is complete, not at
    every step in between, so 10,000 connections make two lines, not 10,000.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __enter__(self) -> Lines:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass

    def cell(self, label: str) -> _LineCell:
        return _LineCell(self.stream, label)


class _LineCell:
    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self._name: str | None = None
        self._written = ""

    def phase(self, name: str, done: int | None = None, total: int | None = None) -> None:
        if name == self._name and done != total:
            return
        self._name = name
        text = describe(name, done, total)
        if text != self._written:
            self._write(text)

    def finish(self, outcome: str) -> None:
        self._write(outcome)

    def _write(self, text: str) -> None:
        self._written = text
        elapsed = time.monotonic() - self.started
        print(f"{self.label}: {text} ({elapsed:.1f} s)", file=self.stream, flush=True)


def display_for(stream: TextIO) -> Display:
    """``Live`` when ``stream`` is a terminal and rich is installed, else ``Lines``."""
    if stream.isatty():
        try:
            from agentcast.bench.live import Live
        except ImportError:  # rich comes with the bench extra
            return Lines(stream)
        return Live.on(stream)
    return Lines(stream)
