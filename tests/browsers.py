"""The browsers the page tests drive: where Firefox is, and which browsers a run used.

Chromium is required (Debian's ``chromium`` and ``chromium-driver``); Firefox is taken
where it is, since Ubuntu has no ``firefox-esr`` package and its ``firefox`` is a wrapper
of a snap, which Marionette cannot start with a profile of the test's. The fixtures record
what they started, or what was missing, in the run's stash; the terminal summary
(``conftest.py``) says it in one line, so a run tells which browsers the page passed in.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_INSTALL = "apt-get install -y chromium chromium-driver"
FIREFOX_INSTALL = "apt-get install -y firefox-esr"
FIREFOX_VARIABLE = "AGENTCAST_FIREFOX"  # a Firefox binary of one's own; only it is tried then
# Debian's firefox-esr, then Mozilla's own .deb; then whatever firefox is on PATH.
FIREFOX_PATHS = (Path("/usr/lib/firefox-esr/firefox-esr"), Path("/usr/lib/firefox/firefox"))
FIREFOX_NAMES = ("firefox-esr", "firefox")
ELF_MAGIC = b"\x7fELF"


@dataclass
class BrowsersUsed:
    """What the page tests of one run started (name: version) and skipped (name: why)."""

    started: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, name: str, why: str) -> None:
        self.missing[name] = why
        self.skipped[name] = self.skipped.get(name, 0) + 1

    def summary(self) -> str:
        """One line: the browsers the page tests ran in, and those missing."""
        parts = [f"{name} {version}" for name, version in self.started.items()] or ["no browser"]
        for name, why in self.missing.items():
            count = self.skipped[name]
            tests = "its 1 test" if count == 1 else f"its {count} tests"
            parts.append(f"{name}: {why}, {tests} skipped")
        return "page tests ran in: " + "; ".join(parts)


BROWSERS_USED = pytest.StashKey[BrowsersUsed]()


def browsers_used(config: pytest.Config) -> BrowsersUsed:
    """The run's record, made at its first use."""
    return config.stash.setdefault(BROWSERS_USED, BrowsersUsed())


def is_program(path: Path) -> bool:
    """Whether ``path`` is an executable ELF binary (not a shell wrapper, such as
    Ubuntu's ``/usr/bin/firefox``, which only installs or starts the snap)."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        return False
    with path.open("rb") as binary:
        return binary.read(4) == ELF_MAGIC


def find_firefox(
    environ: Mapping[str, str] = os.environ,
    paths: tuple[Path, ...] = FIREFOX_PATHS,
) -> tuple[Path | None, str]:
    """A Firefox binary to start, or None and why none is here (with how to get one)."""
    own = environ.get(FIREFOX_VARIABLE)
    if own:
        if is_program(Path(own)):
            return Path(own), ""
        return None, f"{FIREFOX_VARIABLE}={own} is not an executable binary"
    search = environ.get("PATH", os.defpath)
    on_path = (shutil.which(name, path=search) for name in FIREFOX_NAMES)
    for candidate in (*paths, *(Path(p).resolve() for p in on_path if p)):
        if is_program(candidate):
            return candidate, ""
    return None, f"not installed ({FIREFOX_INSTALL})"
