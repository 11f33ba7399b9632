"""The Autobahn testsuite's cases 1-10 (9.*: large and many messages included; 12.* and
13.*, compression, excluded: none is negotiated), run by kosoku against the echo fixture."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from echo_server import echo_server

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
# Cases that can fail because of picows 2.3.1 itself, out of agentcast's reach; nothing
# else may fail.
PICOWS_FAILURES = {
    # Two close frames in one read: picows parses the second before it hands the first to
    # the listener, and answers it with 1002 from its parser ("Received CLOSE for the
    # second time") before the listener can echo the first one's 1000. When the two frames
    # arrive in separate reads the case passes, so it is allowed to pass or fail.
    "7.1.2",
}
KOSOKU_TIMEOUT = 600.0  # the run takes ~15 s on the 2-core CI VM; a hang must not eat CI


def kosoku() -> str:
    """The kosoku next to this interpreter (the test extra installs it), else on PATH."""
    beside = Path(sys.executable).with_name("kosoku")
    found = str(beside) if beside.exists() else shutil.which("kosoku")
    assert found, "kosoku is not installed: pip install -e '.[test]'"
    return found


@pytest.mark.timeout(KOSOKU_TIMEOUT + 60)
def test_autobahn_cases_1_to_10_pass_on_the_echo_fixture(tmp_path: Path) -> None:
    with echo_server() as hub:
        address = f"127.0.0.1:{hub.port}"
        run = subprocess.run(
            [kosoku(), "-m", "fuzzingclient", "-x", "12.*", "-x", "13.*", "-o", tmp_path, address],
            capture_output=True,
            text=True,
            timeout=KOSOKU_TIMEOUT,
            check=False,
        )
    index = tmp_path / "index.json"
    assert index.exists(), f"kosoku wrote no report (exit {run.returncode}): {run.stderr}"
    (cases,) = json.loads(index.read_text()).values()
    failing = {
        case: f"{result['behavior']}/{result['behaviorClose']}"
        for case, result in cases.items()
        if result["behavior"] not in PASSING or result["behaviorClose"] not in PASSING
    }
    assert len(cases) == 301, sorted(cases)
    unexpected = {case: why for case, why in failing.items() if case not in PICOWS_FAILURES}
    assert not unexpected, f"{len(unexpected)} of {len(cases)} cases fail: {unexpected}"
