"""``agentcast bench --plot`` and ``--replot``: one panel per workload that ran, plain-number
axes, and servers that fell behind marked as such (drawn to SVG, whose text can be read)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib import image

PANEL_WIDTH_PX = 5.2 * 110  # plot.PANEL_WIDTH inches at its dpi


def bench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentcast", "bench", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-workload run, small enough to take seconds: its JSON document."""
    folder = tmp_path_factory.mktemp("run")
    done = bench(
        "--servers", "agentcast,websockets", "--clients", "2,4", "--workload", "burst,latency",
        "--messages", "100", "--duration", "0.5", "--rounds", "2",
        "--json", folder / "run.json", "--plot", folder / "run.png",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder / "run.json"


def test_a_run_plots_one_panel_per_workload(saved_run: Path) -> None:
    height, width, _ = image.imread(saved_run.with_suffix(".png")).shape
    assert width == pytest.approx(2 * PANEL_WIDTH_PX, abs=2)
    assert height > 400


def test_replot_of_one_workload_has_one_panel(saved_run: Path, tmp_path: Path) -> None:
    document = json.loads(saved_run.read_text())
    document["results"] = [r for r in document["results"] if r["workload"] == "burst"]
    one = tmp_path / "burst.json"
    one.write_text(json.dumps(document))
    done = bench("--replot", one, "--plot", tmp_path / "burst.png")
    assert done.returncode == 0, done.stderr
    _, width, _ = image.imread(tmp_path / "burst.png").shape
    assert width == pytest.approx(PANEL_WIDTH_PX, abs=2)


def test_labels_are_plain_numbers_and_the_title_names_the_parameters(
    saved_run: Path, tmp_path: Path
) -> None:
    svg = tmp_path / "run.svg"
    assert bench("--replot", saved_run, "--plot", svg).returncode == 0
    text = svg.read_text()
    for label in (
        "connected clients",
        "deliveries per second",
        "p99 publish-to-receive latency (ms)",
        "burst: 100 x 200 B published back to back",
        "latency: 1,000 msg/s of 200 B for 0.5 s",
        "median of 2 rounds",
        "2 cores",
    ):
        assert label in text, label
    assert ">4<" in text and ">2<" in text  # x ticks: the client counts measured
    assert "10^" not in text and "times10" not in text  # no powers of ten on the axes
    assert "fell behind" not in text  # nobody lost a frame in this small run


def test_a_server_that_lost_deliveries_is_marked_with_its_loss(
    saved_run: Path, tmp_path: Path
) -> None:
    document = json.loads(saved_run.read_text())
    latency_cells = [r for r in document["results"] if r["workload"] == "latency"]
    behind = next(c for c in latency_cells if c["server"] == "websockets" and c["clients"] == 4)
    behind["rounds"] = behind["rounds"][:1]
    behind["rounds"][0]["lost_share"] = 0.65
    doctored = tmp_path / "behind.json"
    doctored.write_text(json.dumps(document))
    svg = tmp_path / "behind.svg"
    assert bench("--replot", doctored, "--plot", svg).returncode == 0
    text = svg.read_text()
    assert "fell behind (hollow): websockets at 4 lost 65%" in text
    assert "hollow: fell behind" in text


@pytest.mark.parametrize(
    "content", ["not json", json.dumps({"results": "nope"}), json.dumps({"results": []})]
)
def test_replot_of_something_else_is_one_line_and_exit_2(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    done = bench("--replot", bad, "--plot", tmp_path / "out.png")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "error: --replot " in last and "Traceback" not in done.stderr


def test_replot_needs_plot(tmp_path: Path, saved_run: Path) -> None:
    done = bench("--replot", saved_run)
    assert done.returncode == 2
    assert "--replot needs --plot PATH" in done.stderr


def test_a_run_of_one_round_says_so(saved_run: Path, tmp_path: Path) -> None:
    document = json.loads(saved_run.read_text())
    document["settings"]["rounds"] = 1
    for cell in document["results"]:
        cell["rounds"] = cell["rounds"][:1]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(document))
    svg = tmp_path / "one.svg"
    assert bench("--replot", one, "--plot", svg).returncode == 0
    text = svg.read_text()
    assert "agentcast bench: 1 round, " in text and "median of" not in text
