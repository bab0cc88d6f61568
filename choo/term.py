"""The consoles the CLI prints to, how counts, durations, sizes and warnings read there,
and ``--json`` output.

Data (unit names, task titles, agent output, paths, messages that quote
them) never drives the terminal: ``visible`` shows its control characters
and ANSI escapes as text, and ``shown`` also escapes rich markup, for data
put into a markup string. Every print of data goes through one of them
(rich's ``Text`` takes no markup, so ``visible`` is enough there).

On a terminal rich fits tables to its width. Into a pipe or a file there is
no width to fit, and rich's fallback of 80 columns squeezes the run tables
until they are unreadable, so output that is not a terminal gets 120
columns (or ``COLUMNS``, when set).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

from protocol import control


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 120
    # No emoji codes: ":x:" in a task title stays ":x:".
    return Console(stderr=stderr, highlight=False, emoji=False, width=width)


def visible(text: str, *, lines: bool = False) -> str:
    """``text`` with its control characters shown, so that printing it cannot
    move the cursor, colour, retitle or clear the terminal: ESC as "␛" (an
    ANSI escape reads "␛[31m"), every other C0 or C1 character, DEL included,
    as ``\\xNN`` (``protocol.control``). ``lines`` keeps newlines and tabs
    (a message of several lines); else they are shown too."""
    return control.visible(text, lines=lines)


def shown(text: object, *, lines: bool = False) -> str:
    """Data to put into a rich markup string: ``visible``, and its markup escaped."""
    return escape(visible(str(text), lines=lines))


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, in the plural unless it is one: "1 unit", "3 units"."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def duration(seconds: int) -> str:
    """Whole seconds, for people: "1h 02m 03s", "2m 03s", "5s"."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def duration_ms(ms: float | None) -> str:
    """Milliseconds, finer under a minute: "250 ms", "5.3 s", "2m 03s"; None is "-"."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{int(ms)} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return duration(int(ms // 1000))


def size(n: int) -> str:
    """A byte count, for people: "512 B", "1.5 KiB", ... up to GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def warn(console: Console, *messages: str) -> None:
    """Print each message as a warning; the text is shown as it is, never as markup."""
    for message in messages:
        console.print(f"[yellow]warning:[/] {shown(message, lines=True)}", soft_wrap=True)


def to_json(data: Any) -> str:
    """``data`` as one line of JSON: compact, with non-ASCII text as it is."""
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()


def print_json(data: Any) -> None:
    """``data`` as JSON on standard output for scripts, indented by two spaces."""
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    sys.stdout.write(text + "\n")
