"""Text another party wrote, made safe to print on a terminal or to write in a log line.

An agent's words (or a client's) may hold terminal escapes: ``ESC ] 52`` writes the
watcher's clipboard, ``ESC [ 2 J`` clears the screen, a bare carriage return overwrites
what is shown. Every control character but the ones a caller keeps is written as its
Python escape (``\\x1b``), so the text is shown, never obeyed.
"""

from __future__ import annotations

import re

__all__ = ["for_log", "for_terminal"]

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
