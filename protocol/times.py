"""Timestamps as events carry them and the history stores them: UTC ISO 8601, ms, ``Z``.

One fixed shape (``2026-01-20T14:30:52.123Z``) so that stored times sort as
text in time order, which the run indexes rely on. The orchestrator stamps
its events and runs with ``utc_now``; the daemon checks and parses them here.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def iso_utc(moment: datetime) -> str:
    """Format an aware datetime in the stored shape (converted to UTC)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


# The formatted second of the last ``utc_now``, as one tuple (second, text up
# to its dot) so that a reader never sees the two halves of different calls.
_last_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The current time in the stored shape (``iso_utc`` of now, milliseconds cut).

    Called for every event: the clock is read as an integer and the text of the
    current second is formatted once per second, not once per call.
    """
    global _last_second
    second, milli = divmod(time.time_ns() // 1_000_000, 1000)
    cached = _last_second
    if cached[0] != second:
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    return f"{cached[1]}{milli:03d}Z"


def is_iso_utc(text: str) -> bool:
    """Whether ``text`` has exactly the stored shape (and is a real date)."""
    if _ISO.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_iso_utc(text: str) -> datetime:
    """Parse a stored time back to an aware datetime; ValueError if malformed."""
    return datetime.fromisoformat(text)
