"""Each unit's outcome in a run, as ``GET /api/history/runs/{run}/units`` serves it.

The outcome is folded from the run's unit events by ``protocol.events.
fold_units``, here on the server, so that neither the browser nor
``choo history show`` works it out again. It is read through the same
``HistoryReader`` calls as the other routes, so a run that is not recorded
(served from memory while it runs) has its units too. Each unit then gets
its roll-up (attempts, tokens, cost, tool calls) from the store's
``run_unit_rollups``, which were added up as the events were written.
"""

from __future__ import annotations

from typing import Any

import orjson

from choo_web.sources import HistoryReader
from protocol.errors import NOT_FOUND, Refusal
from protocol.events import UNIT_EVENT_TYPES, empty_rollup, fold_units

ZERO = empty_rollup()  # a unit that ran no attempt

PAGE = 1000


async def unit_outcomes(reader: HistoryReader, run: str) -> dict[str, Any]:
    """``{"run_id", "run_status", "seq", "units": [UnitOutcome]}``.

    ``seq`` is the run's last seq when it was read: the outcomes take in
    every event up to it and none after, so a client following the run's
    stream applies only the events above it.
    """
    detail = await reader.run_detail(run)
    run_id, upto = detail["id"], detail["last_seq"]
    nodes: list[Any] = []
    if detail["has_graph"]:
        # Gone since (retention)? Then its units come from the events alone.
        try:
            nodes = (await reader.run_graph(run_id))["nodes"]
        except Refusal as gone:
            if gone.kind != NOT_FOUND:
                raise
    try:
        events: list[dict[str, Any]] = await reader.unit_events(run_id, upto)
    except Refusal as unknown:
        if unknown.kind != NOT_FOUND:
            raise
        # A run served from memory (not recorded): through its pages.
        events = []
        for kind in UNIT_EVENT_TYPES:
            events += await _events_upto(reader, run_id, kind, upto)
    units = fold_units(nodes if isinstance(nodes, list) else [], events, detail["status"])
    sums = await reader.run_unit_rollups(run_id)
    return {
        "run_id": run_id,
        "run_status": detail["status"],
        "seq": upto,
        "units": [{**unit, **sums.get(unit["unit"], ZERO)} for unit in units],
    }


async def _events_upto(reader: HistoryReader, run_id: str, kind: str, upto: int) -> list[Any]:
    found: list[Any] = []
    after: int | None = 0
    while after is not None and after < upto:
        page = await reader.run_events(run_id, type=kind, unit=None, after=after, limit=PAGE)
        found += [_parsed(e) for e in page["events"] if e["seq"] <= upto]
        after = page["next_after"]
    return found


def _parsed(event: dict[str, Any]) -> dict[str, Any]:
    # A run served from memory keeps its payloads as JSON text (jsonio.event_from_row).
    payload = event.get("payload")
    if isinstance(payload, orjson.Fragment):
        return {**event, "payload": orjson.loads(orjson.dumps(payload))}
    return event
