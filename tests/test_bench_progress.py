"""``agentcast bench`` shows what each cell is doing: live on a terminal (rich), one plain
line per phase change when stderr is a pipe or a file. Real runs, small and bounded."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading

from agentcast.bench.progress import Lines

BENCH = [sys.executable, "-m", "agentcast", "bench", "--servers", "agentcast", "--clients", "3"]
SMALL = ["--messages", "50", "--rounds", "2", "--rate", "100", "--duration", "0.3"]
TIMEOUT = 90
LINE = re.compile(r"^(\[\d+/\d+\] \S+ \S+ x \S+): (.+) \((\d+\.\d) s\)$")
PLAIN_ELAPSED = re.compile(r"\(\d+\.\d s\)")
ELAPSED = re.compile(r"\d:\d\d:\d\d")  # rich's TimeElapsedColumn

BURST_PHASES = [
    "starting server",
    "connecting 0/3",
    "connecting 3/3",
    "warm-up",
    "draining",
    "round 1/2",
    "draining",
    "round 2/2",
    "draining",
    "stopping",
    "done",
]
LATENCY_PHASES = [
    "starting server",
    "connecting 0/3",
    "connecting 3/3",
    "round 1/2",
    "draining",
    "round 2/2",
    "draining",
    "stopping",
    "done",
]


def phases_of(text: str) -> dict[str, list[str]]:
    """Each cell's phases, in the order of the plain lines that name them."""
    phases: dict[str, list[str]] = {}
    for line in text.splitlines():
        if found := LINE.match(line):
            phases.setdefault(found[1], []).append(found[2])
    return phases


def test_a_piped_run_writes_each_phase_of_each_cell_in_order_as_plain_lines() -> None:
    result = subprocess.run(
        [*BENCH, "--workload", "burst,latency", *SMALL],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert phases_of(result.stderr) == {
        "[1/2] burst agentcast x 3": BURST_PHASES,
        "[2/2] latency agentcast x 3": LATENCY_PHASES,
    }, result.stderr


def test_plain_lines_give_each_phase_and_a_count_its_start_and_end_only() -> None:
    stream = io.StringIO()
    with Lines(stream) as display:
        cell = display.cell("[1/1] burst agentcast x 250")
        for opened in (0, 100, 200, 250, 250):
            cell.phase("connecting", opened, 250)
        cell.phase("round 1/3")
        cell.phase("round 2/3")
        cell.finish("error: TimeoutError: gave up")
    assert phases_of(stream.getvalue())["[1/1] burst agentcast x 250"] == [
        "connecting 0/250",
        "connecting 250/250",
        "round 1/3",
        "round 2/3",
        "error: TimeoutError: gave up",
    ]


def test_on_a_terminal_each_cell_is_drawn_live_with_its_phase_and_elapsed_time() -> None:
    """stderr on a pseudo-terminal, as in an interactive shell: rich redraws the cell's
    line, and every phase is drawn as it starts."""
    leader, follower = os.openpty()
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        process = subprocess.run(
            [*BENCH, "--workload", "burst", *SMALL],
            stdout=subprocess.PIPE,
            stderr=follower,
            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
            timeout=TIMEOUT,
        )
    finally:
        os.close(follower)
        reader.join(TIMEOUT)
        os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, screen
    assert "\x1b[" in screen  # drawn and redrawn in place, not written line by line
    assert "[1/1] burst agentcast x 3" in screen
    for phase in BURST_PHASES:
        assert phase in screen, (phase, screen)
    assert ELAPSED.search(screen), screen
    assert not PLAIN_ELAPSED.search(screen)  # not the plain lines
