"""``agentcast bench`` run as a user runs it, for the tests that read its JSON document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = [sys.executable, "-m", "agentcast", "bench"]


def one_round(tmp_path: Path, *args: str, timeout: float) -> tuple[str, list[dict[str, Any]]]:
    """One ``--rounds 1`` run that must exit 0: its stdout and its ``--json`` results."""
    out = tmp_path / "run.json"
    result = subprocess.run(
        [*BENCH, *args, "--rounds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    results: list[dict[str, Any]] = json.loads(out.read_text())["results"]
    return result.stdout, results
