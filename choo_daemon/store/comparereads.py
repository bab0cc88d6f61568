"""The read behind comparing two runs: each task of a run with its sums, in one query.

``run_task_sums`` is served to the web API (``@served``, reads.py) for
``GET /api/history/compare`` (``choo_web/compare.py``), which asks it once
per run. Every number was added up when the events were written
(rollups.py); this only reads it. Tokens and cost are null for a task none
of whose attempts reported them, so "unknown" is not shown as 0.
"""

from __future__ import annotations

from typing import Any

import apsw
import orjson

from choo_daemon.store.reads import Row, resolve_run_id, served

_TASK = (
    "unit",
    "task",
    "title",
    "status",
    "stop_reason",
    "flaky",
    "duration_ms",
    "attempts",
    "agent_ms",
    "tool_calls",
)


@served
def run_task_sums(conn: apsw.Connection, run: str) -> dict[str, Any]:
    """``{"run_id", "tasks": [...]}``: each task of the run ``run`` names, in
    (unit, task) order, with its attempts' sums and their stop reasons."""
    with conn:
        run_id = resolve_run_id(conn, run)
        rows: list[Row] = conn.execute(
            "SELECT t.unit, t.task, t.title, t.status, t.stop_reason, t.flaky, t.duration_ms,"
            " t.attempts, t.agent_ms, t.tool_calls,"
            # Known only if some attempt reported them (the task's sums count null as 0).
            " CASE WHEN count(a.input_tokens) + count(a.output_tokens)"
            " + count(a.cache_read_tokens) + count(a.cache_write_tokens) > 0"
            " THEN t.input_tokens + t.output_tokens + t.cache_read_tokens + t.cache_write_tokens"
            " END,"
            " CASE WHEN count(a.cost_usd) > 0 THEN t.cost_usd END, t.cost_estimated,"
            " json_group_array(a.stop_reason ORDER BY a.attempt)"
            " FILTER (WHERE a.attempt IS NOT NULL)"
            " FROM tasks AS t LEFT JOIN task_attempts AS a"
            " ON a.run_id = t.run_id AND a.unit = t.unit AND a.task = t.task"
            " WHERE t.run_id = ? GROUP BY t.unit, t.task ORDER BY t.unit, t.task",
            (run_id,),
        ).fetchall()
    return {"run_id": run_id, "tasks": [_task(row) for row in rows]}


def _task(row: Row) -> dict[str, Any]:
    found = dict(zip(_TASK, row, strict=False))
    found["flaky"] = bool(found["flaky"])
    tokens, cost, estimated, reasons = row[len(_TASK) :]
    found.update(
        tokens=tokens,
        cost_usd=cost,
        cost_estimated=bool(estimated),
        stop_reasons=_reasons(reasons),
    )
    return found


def _reasons(text: str | None) -> list[str | None]:
    found = orjson.loads(text) if text else []
    return found if isinstance(found, list) else []
