"""Run the field's own JS clients (tests/js: @ag-ui/client and ai, pinned) from pytest.

Each script prints one JSON line and exits 0 (the client accepted the stream), 1 (it
rejected it; the JSON's ``error`` says why) or 2 (no stream to judge: bad usage, no
connection, a non-2xx answer; or no verdict within ``--timeout``). The scripts:

- ``agui_watch.mjs <url> [--runs N]``: an AG-UI SSE watch, through connectAgent's
  pipeline (enforce, verify, apply); ``{"events", "messages", "state", "warnings", "error"}``.
- ``aisdk_read.mjs <url>``: a UI message stream up to ``data: [DONE]``;
  ``{"chunks", "message", "runErrors", "done", "error"}``.
- ``aisdk_resume.mjs <baseUrl> <chatId> [--api /api/chat]``: DefaultChatTransport's
  reconnectToStream; the same, with ``"status": "none"`` (a 204) or ``"message"``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"
NODE_MISSING = "the JS client tests need Node 20 (node on PATH): apt-get install -y nodejs npm"
PACKAGES_MISSING = (
    "tests/js/node_modules is missing: run `npm ci --prefix tests/js` (the README's test"
    " command does) to install the pinned @ag-ui/client and ai"
)
EXIT_GRACE = 10.0  # seconds past a script's own --timeout before it is killed


def node_available() -> bool:
    return shutil.which("node") is not None


@dataclass(frozen=True)
class ClientResult:
    """A script's exit code, its JSON line, and its stderr (the clients' own logging)."""

    code: int
    output: dict[str, Any]
    stderr: str


def run_client(script: str, *args: str, timeout: float = 20.0) -> ClientResult:
    """Run ``tests/js/<script>`` with ``args``; it gives its verdict within ``timeout``
    seconds (exit 2 past it)."""
    completed = subprocess.run(
        ["node", str(JS_DIR / script), *args, "--timeout", str(timeout)],
        capture_output=True,
        text=True,
        timeout=timeout + EXIT_GRACE,
        check=False,
    )
    lines = completed.stdout.splitlines()
    assert len(lines) == 1, f"{script} printed {completed.stdout!r}; stderr: {completed.stderr}"
    return ClientResult(completed.returncode, json.loads(lines[0]), completed.stderr)


def require_js_clients() -> None:
    """Fail (never skip) when node or the pinned packages are not installed."""
    if not node_available():
        pytest.fail(NODE_MISSING, pytrace=False)
    if not (JS_DIR / "node_modules").is_dir():
        pytest.fail(PACKAGES_MISSING, pytrace=False)
