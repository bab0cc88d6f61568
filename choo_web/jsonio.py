"""JSON out: one dict per response, serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response

from choo_web.sources import EventRow


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json")


def event_from_row(row: EventRow) -> dict[str, Any]:
    """A committed row as the events API shows it, without re-parsing its payload."""
    _run, seq, time, kind, unit, task, pr, payload, error = row
    return {
        "seq": seq,
        "time": time,
        "type": kind,
        "unit": unit,
        "task": task,
        "pr": pr,
        "payload": _payload(payload),
        "error": error,
    }


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    # The writer stores compact JSON (no raw newlines, which would break an
    # SSE data line); anything else is parsed and re-encoded to be safe.
    if "\n" in text or "\r" in text:
        return orjson.loads(text)
    return orjson.Fragment(text)
