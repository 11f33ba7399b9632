"""Without redis-server the tests that need it say so once, with the fix, at collection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
NEEDS_REDIS = "tests/test_backplane.py"  # 12 of its 14 tests start a redis-server


def collect(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``pytest --collect-only`` with a PATH on which no redis-server can be found."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *options, NEEDS_REDIS],
        cwd=ROOT,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_redis_server_is_one_line_naming_the_install_and_the_deselect(
    tmp_path: Path,
) -> None:
    result = collect(tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        "ERROR: 12 selected tests need redis-server, which is not installed: apt-get install -y"
        " redis-server, or deselect them with -m 'not redis'"
    ], result.stderr


def test_deselecting_them_runs_the_rest(tmp_path: Path) -> None:
    result = collect(tmp_path, "-m", "not redis")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6/18 tests collected (12 deselected)" in result.stdout
