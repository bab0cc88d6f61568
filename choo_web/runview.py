"""What a run view opens with, in one request: ``GET /api/view/run``.

The run's detail, the first page of its events (with the view's filter and
their count) and the event catalogue, so that the page can draw the run
(or say that there is no such run) after a single round trip. A run id
that names no one run is an answer here, not an HTTP error: the view shows
its not-found page, and the browser logs nothing (it reports every 4xx
response in the console). The rest of the view (graph, units, git) is
asked for once the run is known.
"""

from __future__ import annotations

from typing import Any

from choo_web.errors import from_refusal
from choo_web.sources import HistoryReader
from protocol.errors import Refusal

# The refusals that mean "no one run has this id": unknown, or a prefix of several.
NO_SUCH_RUN = frozenset({"unknown_run", "ambiguous_run"})


async def run_view(
    reader: HistoryReader,
    run: str,
    *,
    type: str | None,
    unit: str | None,
    limit: int,
    catalogue: dict[str, Any],
) -> dict[str, Any]:
    """``{"run", "error", "events", "event_types"}``: RunDetail and EventPage, or
    ``error`` (``{"status", "code", "message"}``, as that run's routes would answer)."""
    try:
        detail = await reader.run_detail(run)
    except Refusal as refused:
        if refused.code not in NO_SUCH_RUN:
            raise
        error = from_refusal(refused)
        found = {"status": error.status, "code": error.code, "message": error.message}
        return {"run": None, "error": found, "events": None, "event_types": catalogue}
    events = await reader.run_events(
        detail["id"], type=type, unit=unit, after=0, limit=limit, count=True
    )
    return {"run": detail, "error": None, "events": events, "event_types": catalogue}
