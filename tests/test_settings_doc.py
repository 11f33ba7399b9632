"""docs/settings.md cannot drift: its flag tables are the parser's, its keyword tables
name exactly the keywords ``Broadcaster`` and ``AgentServer`` take."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from agentcast import AgentServer, Broadcaster

DOCS = Path(__file__).parent.parent / "docs"
PAGE = DOCS / "settings.md"


def _generator() -> ModuleType:
    """docs/settings_doc.py, a script of the docs rather than a module of the package."""
    spec = importlib.util.spec_from_file_location("settings_doc", DOCS / "settings_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


settings_doc = _generator()


def _keywords_in_table(heading: str) -> set[str]:
    """The names in the first column of the table under ``heading``."""
    section = PAGE.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.M)
    return {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}


def _keywords(function: object) -> set[str]:
    """What a caller may pass ``function`` by keyword."""
    passable = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    return {p.name for p in parameters if p.kind in passable and p.name != "self"}


def test_the_flag_tables_are_what_the_parser_says() -> None:
    page = PAGE.read_text()
    assert settings_doc.rewrite(page) == page, (
        "docs/settings.md is not what the command line's parser says:"
        " run python docs/settings_doc.py to regenerate it"
    )


def test_the_flag_tables_do_not_depend_on_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTCAST_TOKEN", raising=False)
    bare = settings_doc.render()
    monkeypatch.setenv("AGENTCAST_TOKEN", "a-token-of-someone")
    assert settings_doc.render() == bare


def test_every_broadcaster_keyword_is_in_its_table_and_no_other() -> None:
    assert _keywords_in_table("`Broadcaster(...)` keywords") == _keywords(Broadcaster.__init__)


def test_every_agent_server_keyword_of_its_own_is_in_its_table_and_no_other() -> None:
    assert _keywords_in_table("`AgentServer(...)` keywords") == _keywords(AgentServer.__init__)
