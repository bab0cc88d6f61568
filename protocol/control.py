"""Control characters made visible: text from a client or a plan, printed to a
terminal or written to a log, cannot move the cursor, colour, retitle or
clear the screen, nor start a line of its own.

``visible`` shows ESC as "␛" (an ANSI escape reads "␛[31m") and every other C0
or C1 character, DEL included, as ``\\xNN``. ``choo.term`` uses it for what
the CLI prints, ``choo_daemon`` for its log.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _show(match: re.Match[str]) -> str:
    char = match.group()
    return "␛" if char == "\x1b" else f"\\x{ord(char):02x}"


def visible(text: str, *, lines: bool = False) -> str:
    """``text`` with its control characters shown; ``lines`` keeps newlines and
    tabs (a message of several lines), else they are shown too."""
    return (_CONTROL_BUT_LINES if lines else _CONTROL).sub(_show, text)
