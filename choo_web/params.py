"""Query parameters: empty means absent; numbers are plain decimal integers.

Ranges are checked by the read side, whose messages name the parameter,
the value and what was expected, as these do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from choo_web.errors import bad_parameter

_INTEGER = re.compile(r"-?[0-9]{1,18}")  # fits SQLite's 64-bit integers


def text(args: Mapping[str, str], name: str) -> str | None:
    value = args.get(name)
    return value or None


def integer(value: str | None, name: str, default: int, expected: str) -> int:
    if value is None or value == "":
        return default
    if _INTEGER.fullmatch(value) is None:
        raise bad_parameter(name, value, expected)
    return int(value)


def optional_integer(value: str | None, name: str, expected: str) -> int | None:
    """An integer parameter with no default: None when absent or empty."""
    if value is None or value == "":
        return None
    return integer(value, name, 0, expected)
