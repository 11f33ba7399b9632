"""Run Python as if a package were not installed: its import fails for real.

``python without_package.py PACKAGE -m MODULE ARGS...`` or ``... PACKAGE -c CODE``:
a finder first on ``sys.meta_path`` refuses ``PACKAGE`` and its submodules, as the
import system does for a package missing from every path entry.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType


class Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if name == self.package or name.startswith(self.package + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def main() -> None:
    package, mode, target, *arguments = sys.argv[1:]
    sys.meta_path.insert(0, Refuse(package))
    sys.path.pop(0)  # this file's directory: the code run should not see the tests
    if mode == "-m":
        sys.argv = [target, *arguments]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *arguments]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main()
