"""docs/settings.md cannot drift: its flag tables are the parser's, its keyword tables
name exactly the keywords ``Broadcaster`` and ``AgentServer`` take."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from agentcast import AgentServer, Broadcaster
from agentcast.settings_doc import render, rewrite

PAGE = Path(__file__).parent.parent / "docs" / "settings.md"


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
    assert rewrite(page) == page, (
        "docs/settings.md is not what the command line's parser says:"
        " run python -m agentcast.settings_doc to regenerate it"
    )


def test_the_flag_tables_do_not_depend_on_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTCAST_TOKEN", raising=False)
    bare = render()
    monkeypatch.setenv("AGENTCAST_TOKEN", "a-token-of-someone")
    assert render() == bare


def test_every_broadcaster_keyword_is_in_its_table_and_no_other() -> None:
    assert _keywords_in_table("`Broadcaster(...)` keywords") == _keywords(Broadcaster.__init__)


def test_every_agent_server_keyword_of_its_own_is_in_its_table_and_no_other() -> None:
    assert _keywords_in_table("`AgentServer(...)` keywords") == _keywords(AgentServer.__init__)
