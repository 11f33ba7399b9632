"""Text another party wrote, made safe to print on a terminal, in a log line or in an error
frame.

An agent's words (or a client's) may hold terminal escapes: ``ESC ] 52`` writes the
watcher's clipboard, ``ESC [ 2 J`` clears the screen, a bare carriage return overwrites
what is shown. Every control character but the ones a caller keeps is written as its
Python escape (``\\x1b``), so the text is shown, never obeyed.
"""

from __future__ import annotations

import re
import reprlib
from typing import Final

__all__ = ["QUOTE_LIMIT", "clip", "for_log", "for_terminal", "quote"]

QUOTE_LIMIT: Final = 64

# C0 controls, DEL and the C1 controls (a terminal may take U+009B as CSI).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROLS_BUT_NEWLINE_AND_TAB = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def for_terminal(text: str) -> str:
    """``text`` with every control character escaped but newline and tab."""
    return _CONTROLS_BUT_NEWLINE_AND_TAB.sub(_escaped, text)


def for_log(text: str) -> str:
    """``text`` with every control character escaped, newlines too: one log line stays one
    line, whatever the text says."""
    return _CONTROLS.sub(_escaped, text)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A short, escaped excerpt of ``value`` for an error frame or a log line.

    Client input is never repeated in full: it may be a megabyte (sent back, or
    written to the log, for every bad request) or hold terminal escapes. Strings
    keep at most ``limit`` characters of their ``repr`` (control characters
    escaped), containers their first few items, a few levels deep."""
    excerpt = reprlib.Repr()
    excerpt.maxstring = excerpt.maxother = excerpt.maxlong = limit
    excerpt.maxlevel = 2
    excerpt.maxdict = excerpt.maxlist = 4
    return excerpt.repr(value)


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text`` ("…" marks a cut), the ones that are not
    printable escaped: for a message that may repeat client input (an exception's)."""
    kept = text[:limit]
    if not kept.isprintable():
        kept = repr(kept)[1:-1]
    return kept + "…" if len(text) > limit else kept
