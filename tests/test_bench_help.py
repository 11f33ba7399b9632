"""``agentcast bench --help`` in an 80-column terminal: wrapped at spaces, never mid-word."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from agentcast.bench.cli import add_arguments


def test_help_wraps_between_words_within_80_columns() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentcast", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    shown = set(result.stdout.split())
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for action in parser._actions:
        for word in (action.help or "").split():
            assert word in shown, f"{action.option_strings}: {word!r} broken"
    assert max(map(len, result.stdout.splitlines())) <= 80
