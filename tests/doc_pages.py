"""The pages whose examples the tests run: the README and the docs site's pages (not the
design notes under docs/research, which are not part of the site)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def doc_pages() -> list[Path]:
    """The README, then every page of docs/ in name order."""
    pages = sorted(p for p in DOCS.rglob("*.md") if "research" not in p.relative_to(DOCS).parts)
    return [README, *pages]


def where(page: Path, line: int) -> str:
    """A readable id for a block: its page, relative to the repository, and its line."""
    return f"{page.relative_to(ROOT)}:{line}"
