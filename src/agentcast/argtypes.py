"""argparse types for numbers in a range: a bad value names what was expected.

argparse reports a type's ``ValueError`` as ``invalid <function name> value``, which
tells a user nothing; these raise ``ArgumentTypeError``, which argparse prints after the
flag the user typed: ``argument --port: expected a port 0-65535, got 'abc'``.
Standard library only: ``agentcast bench`` imports it before anything heavy.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)

__all__ = [
    "COUNT",
    "NON_NEGATIVE",
    "PORT",
    "POSITIVE",
    "POSITIVE_INT",
    "number_in",
]


def number_in(
    convert: Callable[[str], N], expected: str, accept: Callable[[N], bool]
) -> Callable[[str], N]:
    """An argparse ``type``: ``convert(text)`` if ``accept`` takes it, else an error
    saying ``expected <expected>, got '<text>'``."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):  # NaN fails every comparison, so it is refused too
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


PORT = number_in(int, "a port 0-65535", lambda port: 0 <= port <= 65535)
POSITIVE_INT = number_in(int, "a whole number of at least 1", lambda value: value >= 1)
COUNT = number_in(int, "a whole number of at least 0", lambda value: value >= 0)
POSITIVE = number_in(float, "a number above 0", lambda value: value > 0)
NON_NEGATIVE = number_in(float, "a number of at least 0", lambda value: value >= 0)
