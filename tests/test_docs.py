"""The README is a short guide that opens with the two commands a newcomer needs, CI runs
its test command as written, and the docs site builds with no broken link."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from doc_pages import README, ROOT

MAX_README_LINES = 200  # a guide: the reference lives in docs/
QUICK_START = "python3 -m venv .venv && . .venv/bin/activate && pip install . && agentcast serve"
TEST_COMMAND = (
    "apt-get update && apt-get install -y python3-venv redis-server chromium chromium-driver"
    ' && python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]"'
    " && npm ci --prefix tests/js && python -m pytest"
)
FENCE = re.compile(r"```\w*\n(.*?)```", re.S)
LINK = re.compile(r"\]\((?!https?://|#)([^)#]+)(?:#[^)]*)?\)")


def test_the_readme_is_a_guide_of_at_most_200_lines() -> None:
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines: move reference to docs/"


def test_the_readme_opens_with_the_two_commands() -> None:
    first_block = FENCE.search(README.read_text())
    assert first_block is not None
    assert first_block[1].splitlines() == [QUICK_START, TEST_COMMAND]


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci, "the README's test command is not a line of .ci/run"
    assert "mkdocs build --strict" in "\n".join(ci)


def test_the_development_page_gives_the_same_test_command() -> None:
    assert TEST_COMMAND in (ROOT / "docs" / "development.md").read_text().splitlines()


def test_the_readmes_links_name_files_that_exist() -> None:
    targets = LINK.findall(README.read_text())
    assert targets, "no relative link found"
    assert [target for target in targets if not (ROOT / target).exists()] == []


def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    """Warnings fail the build: a broken link or anchor, a page missing from the nav."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "index.html").exists()
    assert 'src="../page.png"' in (tmp_path / "live-page" / "index.html").read_text()
    assert (tmp_path / "page.png").exists()  # the README's picture of the live page
