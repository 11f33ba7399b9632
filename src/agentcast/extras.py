"""Optional dependencies (the package's extras): a missing one is named with its install line.

The install line is for a source checkout (``pip install ".[redis]"``): agentcast is
not on a package index yet, so ``pip install 'agentcast[redis]'`` would fail.
"""

from __future__ import annotations

import importlib

__all__ = ["MissingExtra", "install_hint", "require"]


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says how to install it."""


def install_hint(package: str, extra: str, needed_by: str) -> str:
    """``<needed_by> needs <package>: pip install ".[<extra>]"``, one line."""
    return f'{needed_by} needs the {package} package: pip install ".[{extra}]"'


def require(package: str, extra: str, needed_by: str) -> None:
    """Import ``package``, or raise ``MissingExtra`` naming the extra (no chained traceback).

    Only the package itself missing is reported so; an installed package that fails to
    import for another reason keeps its own error."""
    try:
        importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise
        raise MissingExtra(install_hint(package, extra, needed_by), name=package) from None
