"""``agentcast bench --plan FILE``: the sweeps a file lists, run in one invocation as a user
runs it (real servers and receivers on 127.0.0.1, small and bounded; timings never asserted),
and every line checked before anything runs."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

BENCH = [sys.executable, "-m", "agentcast", "bench"]
TIMEOUT = 120
TINY = "--clients 10 --workload burst --messages 50 --rounds 1"


def write_plan(tmp_path: Path, *lines: str) -> Path:
    plan = tmp_path / "sweeps.plan"
    plan.write_text("\n".join(lines) + "\n")
    return plan


def bench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BENCH, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT
    )


def test_a_plan_runs_each_line_under_its_command_and_reports_what_it_printed(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    plan = write_plan(
        tmp_path,
        "# two sweeps",
        f"--servers agentcast {TINY} --json {shlex.quote(str(first))}",
        "",
        f"--servers agentcast,pyfanout {TINY} --json {shlex.quote(str(second))}  # and a note",
    )
    report = tmp_path / "out" / "report.txt"
    result = bench("--plan", plan, "--report", report)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"agentcast bench --plan {plan}: 2 sweeps, 3 cells"
    headings = [n for n, line in enumerate(lines) if line.startswith("[")]
    assert [lines[n] for n in headings] == [
        f"[1/2] agentcast bench --servers agentcast {TINY} --json {first}",
        f"[2/2] agentcast bench --servers agentcast,pyfanout {TINY} --json {second}",
    ]
    sections = [lines[headings[0] : headings[1]], lines[headings[1] :]]
    for section, servers in zip(sections, (["agentcast"], ["agentcast", "pyfanout"]), strict=True):
        table = section[section.index("burst: 50 x 200 B published back to back") + 2 :]
        assert [row.split()[0] for row in table[: len(servers)]] == servers
        assert all(row.split()[1] == "10" for row in table[: len(servers)])
    assert lines[-1].startswith("2 sweeps, 3 cells in ")
    assert report.read_text() == result.stdout  # the tables, and no progress
    assert "[1/2] [1/1] burst agentcast x 10: done" in result.stderr
    assert "[2/2] [2/2] burst pyfanout x 10: done" in result.stderr
    assert "estimated run time: about " in result.stderr
    for path, servers, words in [
        (first, ["agentcast"], lines[headings[0]].split()[1:]),
        (second, ["agentcast", "pyfanout"], lines[headings[1]].split()[1:]),
    ]:
        document = json.loads(path.read_text())
        assert document["command"] == words  # the line's own command, to rerun it alone
        assert [(r["server"], r["error"], r["summary"]["lost"]) for r in document["results"]] == [
            (server, None, 0) for server in servers
        ]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("--servers agentcast,nope", "unknown server 'nope'"),
        ("--servers agentcast --url ws://127.0.0.1:9/", "--url cannot be used in a plan's line"),
        ("--servers agentcast --plan other.plan", "--plan cannot be used in a plan's line"),
        ('--servers "agentcast', "No closing quotation"),
        ("--clients 10 --rounds 0", "argument --rounds: expected a whole number"),
        ("--servers agentcast --colour", "unrecognized arguments: --colour"),
    ],
)
def test_a_bad_line_is_one_error_naming_it_and_nothing_runs(
    tmp_path: Path, line: str, says: str
) -> None:
    ran = tmp_path / "ran.json"
    plan = write_plan(
        tmp_path,
        f"--servers agentcast {TINY} --json {shlex.quote(str(ran))}",
        "# fine so far",
        line,
    )
    result = bench("--plan", plan, "--report", tmp_path / "report.txt")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"agentcast bench: error: {plan} line 3: ")
    assert says in result.stderr
    assert not ran.exists() and not (tmp_path / "report.txt").exists()


@pytest.mark.parametrize(
    ("contents", "says"),
    [(None, "No such file or directory"), ("# nothing but comments\n\n", "no sweeps in it")],
)
def test_a_plan_file_without_sweeps_is_one_error(
    tmp_path: Path, contents: str | None, says: str
) -> None:
    plan = tmp_path / "results.plan"
    if contents is not None:
        plan.write_text(contents)
    result = bench("--plan", plan)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"agentcast bench: error: --plan {plan}: "
        if contents is None
        else f"agentcast bench: error: {plan}: "
    )
    assert says in result.stderr


def test_sweep_flags_beside_a_plan_are_refused(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, f"--servers agentcast {TINY}")
    result = bench("--plan", plan, "--rounds", "5", "--servers", "pyfanout")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "not --servers, --rounds" in result.stderr


class _Reader:
    """A stream's lines as they come, read by a thread until the stream ends."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def wait_for(self, text: str, timeout: float) -> None:
        """Return once a line holding ``text`` has come; ``queue.Empty`` at the deadline."""
        deadline = time.monotonic() + timeout
        while text not in self._lines.get(timeout=max(0.0, deadline - time.monotonic())):
            pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"

    def rest(self) -> list[str]:
        """The lines not yet waited for (after ``join``)."""
        return list(self._lines.queue)


LONG_LATENCY = "--servers agentcast --clients 3 --workload latency --duration 1 --rounds 50"


def interrupt(args: list[str], when: str) -> tuple[str, str]:
    """Run the bench in a process group of its own, press Ctrl-C (SIGINT to the whole group,
    as a terminal does) once a progress line holds ``when``; its stdout and stderr. It must
    exit 130 with one line on stderr after the progress and no traceback from any process."""
    with subprocess.Popen(
        [*BENCH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        assert process.stderr is not None and process.stdout is not None
        progress = _Reader(process.stderr)
        try:
            progress.wait_for(when, TIMEOUT)
            os.killpg(process.pid, signal.SIGINT)
            stdout = process.stdout.read()
            assert process.wait(timeout=TIMEOUT) == 130
        finally:
            process.kill()  # nothing, once it has ended
            process.wait()
        progress.join(TIMEOUT)
    stderr = "".join(progress.rest())
    assert "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1:] == ["agentcast bench: interrupted"], stderr
    assert all(line.startswith("[") for line in stderr.splitlines()[:-1]), stderr
    return stdout, stderr


def test_ctrl_c_stops_the_plan_keeping_the_sweeps_that_finished(tmp_path: Path) -> None:
    # rounds of 1 s: the server process, which ignores Ctrl-C, ends its round before it stops
    plan = write_plan(tmp_path, f"--servers agentcast {TINY}", f"{LONG_LATENCY} --rate 50")
    report = tmp_path / "report.txt"
    stdout, _ = interrupt(
        ["--plan", str(plan), "--report", str(report)],
        "[2/2] [1/1] latency agentcast x 3: round 1/50",
    )
    lines = stdout.splitlines()
    assert "burst: 50 x 200 B published back to back" in lines  # the first sweep's table
    assert not any(line.startswith("latency:") for line in lines)
    assert lines[-1].startswith("interrupted in sweep 2 of 2 after ")
    assert report.read_text() == stdout


def test_ctrl_c_stops_a_run_with_one_line() -> None:
    stdout, _ = interrupt(
        [*LONG_LATENCY.split(), "--rate", "50"], "[1/1] latency agentcast x 3: round 1/50"
    )
    assert stdout == ""


def test_a_single_run_reports_its_tables_too(tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    result = bench(*f"--servers agentcast {TINY}".split(), "--report", report)
    assert result.returncode == 0, result.stderr
    assert "burst: 50 x 200 B published back to back" in result.stdout.splitlines()
    assert report.read_text() == result.stdout


def test_two_lines_writing_the_same_file_are_refused(tmp_path: Path) -> None:
    same = shlex.quote(str(tmp_path / "sweep.json"))
    plan = write_plan(
        tmp_path,
        f"--servers agentcast {TINY} --json {same}",
        f"--servers pyfanout {TINY} --json {same}",
    )
    result = bench("--plan", plan)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{plan} line 2: line 1 writes {tmp_path / 'sweep.json'} too" in result.stderr
    assert not (tmp_path / "sweep.json").exists()
