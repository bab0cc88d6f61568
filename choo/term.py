"""The consoles the CLI prints to, and the wording of counts in them.

On a terminal rich fits tables to its width. Into a pipe or a file there is
no width to fit, and rich's fallback of 80 columns squeezes the run tables
until they are unreadable, so output that is not a terminal gets 120
columns (or ``COLUMNS``, when set).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 120
    return Console(stderr=stderr, highlight=False, width=width)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, in the plural unless it is one: "1 unit", "3 units"."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"
