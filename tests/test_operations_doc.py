"""docs/operations.md names every metric a scrape can show and every ``stats()`` key a
server has: a counter added to the code without a row there fails here."""

from __future__ import annotations

import re

from agentcast.memgpt.app import AgentServer
from agentcast.serve.metrics import COUNTERS, GAUGES
from doc_pages import DOCS

PAGE = (DOCS / "operations.md").read_text()
FIRST_CELL = re.compile(r"^\| `([^`]+)`", re.M)


def _section(title: str) -> str:
    return PAGE.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _stats_keys_named() -> set[str]:
    """The keys the ``stats()`` table's first column names (``_size`` after
    ``dropped_clients_rate`` stands for ``dropped_clients_size``)."""
    named: set[str] = set()
    for row in _section("`stats()`").splitlines():
        if row.startswith("| `"):
            cell = row.split("|")[1]
            named |= {
                f"dropped_clients{key}" if key.startswith("_") else key
                for key in re.findall(r"`([^`]+)`", cell)
            }
    return named


def test_the_metrics_table_has_a_row_for_each_gauge_and_counter() -> None:
    rows = set(FIRST_CELL.findall(_section("Metrics")))
    metrics = {f"agentcast_{name}" for name, _ in GAUGES.values()}
    metrics |= {f"agentcast_{name}_total" for name, _ in COUNTERS.values()}
    assert sorted(metrics - rows) == []


def test_the_stats_table_names_every_key_of_a_server() -> None:
    with AgentServer(port=0) as server:
        keys = set(server.stats())
    assert sorted(keys - _stats_keys_named()) == []
