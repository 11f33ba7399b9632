"""The sweep's live display on a terminal: a line per cell with a bar, its phase and the
elapsed time, redrawn by rich a few times a second (``progress.Display``)."""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from rich.console import Console, RenderableType
from rich.progress import Progress as RichProgress
from rich.progress import ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar

from agentcast.bench.progress import describe

REFRESH_PER_SECOND = 4
BAR_WIDTH = 20


class _PhaseBar(ProgressColumn):
    """The phase's own count (fields ``done`` and ``of``), not the task's: it fills with
    the connections opened, and pulses while the phase has nothing to count."""

    def render(self, task: Task) -> RenderableType:
        return ProgressBar(
            total=task.fields["of"],
            completed=task.fields["done"] or 0,
            width=BAR_WIDTH,
            animation_time=task.get_time(),
        )


class Live:
    """A line per cell: label, bar, phase, elapsed time. The elapsed time ticks between
    phases; finished cells stay on screen with their outcome and total time."""

    def __init__(self, console: Console) -> None:
        self._progress = RichProgress(
            TextColumn("{task.description}"),
            _PhaseBar(),
            TextColumn("{task.fields[phase]}"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=REFRESH_PER_SECOND,
        )

    @classmethod
    def on(cls, stream: TextIO) -> Live:
        return cls(Console(file=stream))

    def __enter__(self) -> Live:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def cell(self, label: str) -> _LiveCell:
        task = self._progress.add_task(label, phase="", done=None, of=None)
        return _LiveCell(self._progress, task)


class _LiveCell:
    def __init__(self, progress: RichProgress, task: TaskID) -> None:
        self._progress = progress
        self._task = task
        self._name: str | None = None

    def phase(self, name: str, done: int | None = None, total: int | None = None) -> None:
        # a new phase and a complete count are drawn at once, other counts on the next tick
        now = name != self._name or (total is not None and done == total)
        self._name = name
        self._progress.update(
            self._task, phase=describe(name, done, total), done=done, of=total, refresh=now
        )

    def finish(self, outcome: str) -> None:
        self._progress.update(self._task, phase=outcome, done=1, of=1)
        self._progress.stop_task(self._task)
        self._progress.refresh()
