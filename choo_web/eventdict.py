"""A committed event as the API shows it: the one definition of that dict.

The history's reads (``choo_daemon.store.reads``), the runs shown live but
not recorded, and the SSE streams all build their events here, from a row
as committed: (run_id, seq, time, type, unit, task, pr, payload JSON text,
error). No quart here: the daemon's store imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson


def payload_fragment(text: str) -> Any:
    """The stored payload as orjson writes it out again, without parsing it."""
    # The writer stores compact JSON (no raw newlines, which would break an
    # SSE data line); anything else is parsed and re-encoded to be safe.
    if "\n" in text or "\r" in text:
        return orjson.loads(text)
    return orjson.Fragment(text)


def event_from_row(
    row: Sequence[Any], payload: Callable[[str], Any] = payload_fragment
) -> dict[str, Any]:
    """The event's fields; ``payload`` turns its JSON text into the value shown."""
    _run, seq, time, kind, unit, task, pr, text, error = row
    return {
        "seq": seq,
        "time": time,
        "type": kind,
        "unit": unit,
        "task": task,
        "pr": pr,
        "payload": None if text is None else payload(text),
        "error": error,
    }
