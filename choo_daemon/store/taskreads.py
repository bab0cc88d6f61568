"""Reads of the roll-ups (rollups.py): per unit, per task and attempt, across runs.

Served to the web API like the other reads (``@served``, reads.py):
``run_unit_rollups`` (the sums that ``/units`` adds to each unit's outcome),
``run_tasks`` (``/runs/{id}/tasks``) and ``task_table`` (``/tasks``, one
repository's tasks across its runs). Every number here was added up when
the events were written; these only read and arrange it.
"""

from __future__ import annotations

from collections.abc import Iterable
from statistics import median
from typing import Any, Final

import apsw
import orjson

from choo_daemon.store.errors import BadParameter
from choo_daemon.store.reads import Row, resolve_run_id, served
from choo_daemon.store.records import TaskRollup
from protocol.events import AGENT_USAGE, empty_rollup

MAX_TOOLS: Final = 500  # tool calls listed per attempt; tools_more counts the rest
MAX_TASKS: Final = 1000  # rows of the cross-run table
MAX_LAST: Final = 100  # outcomes listed per task in the cross-run table

_SUMS = ("attempts", *AGENT_USAGE, "cost_estimated", "tool_calls")
_ATTEMPT = (
    "attempt",
    "started_at",
    "finished_at",
    "stop_reason",
    "agent_ms",
    "validation_ms",
    "exit_code",
    "session_id",
    "model",
    "agent_status",
    *AGENT_USAGE,
    "cost_estimated",
    "tool_calls",
    "validation_command",
    "validation_output",
)


def empty_unit_rollup() -> TaskRollup:
    """A unit's roll-up fields when it ran no attempt (or its run is not recorded)."""
    return empty_rollup()


@served
def run_unit_rollups(conn: apsw.Connection, run: str) -> dict[str, TaskRollup]:
    """Each unit's sums over its tasks' attempts in the run ``run`` names: unit -> sums."""
    with conn:
        run_id = resolve_run_id(conn, run)
        rows: list[Row] = conn.execute(
            "SELECT unit, sum(attempts), sum(input_tokens), sum(output_tokens),"
            " sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd),"
            " max(cost_estimated), sum(tool_calls) FROM tasks WHERE run_id = ? GROUP BY unit",
            (run_id,),
        ).fetchall()
    found: dict[str, TaskRollup] = {}
    for unit, *sums in rows:
        sums_ = dict(zip(_SUMS, sums, strict=True))
        sums_["cost_estimated"] = bool(sums_["cost_estimated"])
        found[unit] = sums_
    return found


def _json_object(columns: Iterable[str], *, bools: Iterable[str] = ()) -> str:
    """SQL for a JSON object of ``columns`` (named as they are), ``bools`` as true/false."""
    flags = set(bools)
    return "json_object({})".format(
        ", ".join(
            f"'{c}', json(iif({c}, 'true', 'false'))" if c in flags else f"'{c}', {c}"
            for c in columns
        )
    )


_TASK_JSON: Final = _json_object(
    ("unit", "task", "title", "status", "stop_reason", "flaky"), bools=("flaky",)
)
_ATTEMPT_JSON: Final = _json_object(_ATTEMPT, bools=("cost_estimated",))


def _tasks_text(conn: apsw.Connection, run_id: str, unit: str | None, task: int | None) -> str:
    """A run's TaskRollups (narrowed to ``unit``, ``task``) as one JSON array.

    SQLite writes each task and attempt as JSON text, and only the text is
    joined here: a whole run holds thousands of attempts, and making a
    Python object of each of their values and then writing it out again
    cost three times as much as this.
    """
    where = "run_id = ?"
    params: list[apsw.SQLiteValue] = [run_id]
    if unit is not None:
        where += " AND unit = ?"
        params.append(unit)
    if task is not None:
        where += " AND task = ?"
        params.append(task)
    attempts: dict[tuple[str, int], list[str]] = {}
    for u, t, text in conn.execute(
        f"SELECT unit, task, {_ATTEMPT_JSON} FROM task_attempts"
        f" WHERE {where} ORDER BY unit, task, attempt",
        params,
    ):
        attempts.setdefault((u, t), []).append(text)
    tasks = [
        # The task's object, opened again at its closing brace for its attempts.
        f'{text[:-1]},"attempts":[{",".join(attempts.get((u, t), ()))}]}}'
        for u, t, text in conn.execute(
            f"SELECT unit, task, {_TASK_JSON} FROM tasks WHERE {where} ORDER BY unit, task",
            params,
        )
    ]
    return f"[{','.join(tasks)}]"


@served
def settled_stamp(conn: apsw.Connection, run: str) -> tuple[str, int, int, int] | None:
    """(id, last seq, event count, resume count) of the run ``run`` names once it
    has ended and its events are all added up: its roll-ups are final until
    the stamp changes. None while it runs, or while a fold is still due."""
    with conn:
        run_id = resolve_run_id(conn, run)
        row = conn.execute(
            "SELECT status, last_seq, event_count, resume_count,"
            " rolled_seq >= last_seq AND NOT EXISTS (SELECT 1 FROM rollup_queue q"
            " WHERE q.run_id = runs.id) FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
    if row is None:
        return None
    status, last, count, resumes, whole = row
    if status == "running" or not whole:
        return None
    return (run_id, last, count, resumes)


@served
def run_tasks_json(conn: apsw.Connection, run: str, *, unit: str | None = None) -> bytes:
    """``run_tasks`` without ``task``, as the JSON text of its answer (what the web API sends)."""
    with conn:
        run_id = resolve_run_id(conn, run)
        tasks = _tasks_text(conn, run_id, unit, None)
    return b'{"run_id":%b,"tasks":%b}' % (orjson.dumps(run_id), tasks.encode())


@served
def run_tasks(
    conn: apsw.Connection, run: str, *, unit: str | None = None, task: int | None = None
) -> dict[str, Any]:
    """The tasks of the run ``run`` names, each with its attempts (unit, then task order).

    ``unit`` narrows to one unit's tasks, ``unit`` and ``task`` to one task,
    whose attempts then list their tool calls (``tools``, at most MAX_TOOLS,
    ``tools_more`` counting the rest).
    """
    with conn:
        run_id = resolve_run_id(conn, run)
        if task is not None and unit is None:
            raise BadParameter("task", task, "given with unit (?unit=U&task=N)")
        tasks: list[dict[str, Any]] = orjson.loads(_tasks_text(conn, run_id, unit, task))
        if unit is not None and task is not None and tasks:
            starts: list[_Start] = [
                (start_seq, try_, one)
                for (start_seq, try_), one in zip(
                    conn.execute(
                        "SELECT start_seq, try FROM task_attempts"
                        " WHERE run_id = ? AND unit = ? AND task = ? ORDER BY attempt",
                        (run_id, unit, task),
                    ),
                    tasks[0]["attempts"],
                    strict=True,
                )
            ]
            _give_tools(_tools(conn, run_id, unit, task), starts)
    return {"run_id": run_id, "tasks": tasks}


_Start = tuple[int, int | None, dict[str, Any]]  # (start_seq, try, attempt)


# (seq, try, tool dict) of a task's tool calls, seq order.
_Tool = tuple[int, int | None, dict[str, Any]]


def _tools(conn: apsw.Connection, run_id: str, unit: str, task: int) -> list[_Tool]:
    found: list[_Tool] = []
    for seq, text in conn.execute(
        "SELECT seq, payload FROM events INDEXED BY events_run_unit_seq"
        " WHERE run_id = ? AND unit = ? AND type = 'task.agent.tool' AND task = ? ORDER BY seq",
        (run_id, unit, task),
    ):
        payload = orjson.loads(text) if text is not None else None
        payload = payload if isinstance(payload, dict) else {}
        attempt = payload.get("attempt")
        found.append(
            (
                seq,
                attempt if isinstance(attempt, int) else None,
                {
                    "seq": seq,
                    "tool": payload.get("tool"),
                    "target": payload.get("target"),
                    "exit_code": payload.get("exit_code"),
                    "is_error": payload.get("is_error"),
                },
            )
        )
    return found


def _give_tools(tools: list[_Tool], starts: list[_Start]) -> None:
    """List each tool call under its attempt: the one of its try begun last before it.

    The same rule as the write side's (rollups._latest), so ``tools`` and
    ``tool_calls`` agree.
    """
    for _, _, one in starts:
        one["tools"], one["tools_more"] = [], 0
    for seq, try_, tool in tools:
        best: tuple[int, int | None, dict[str, Any]] | None = None
        for start in starts:
            if (
                start[0] < seq
                and (try_ is None or start[1] == try_)
                and (best is None or start[0] > best[0])
            ):
                best = start
        if best is None:
            continue
        one = best[2]
        if len(one["tools"]) < MAX_TOOLS:
            one["tools"].append(tool)
        else:
            one["tools_more"] += 1


@served
def task_table(
    conn: apsw.Connection, repo: str, *, limit: int = 50, last: int = 10
) -> dict[str, Any]:
    """One repository's tasks across its runs, keyed by (unit, task): flaky first.

    ``last`` outcomes per task, newest first; ``limit`` tasks.
    """
    if not 1 <= limit <= MAX_TASKS:
        raise BadParameter("limit", limit, f"1 to {MAX_TASKS}")
    if not 1 <= last <= MAX_LAST:
        raise BadParameter("last", last, f"1 to {MAX_LAST}")
    with conn:
        picked = _shown_tasks(conn, repo, limit)
        keys = [(unit, task) for unit, task, _ in picked]
        rows = _task_rows(conn, repo, keys) if keys else []
    groups: dict[tuple[str, int], list[Row]] = {key: [] for key in keys}
    for row in rows:
        groups[(row[0], row[1])].append(row)
    table = [_task_row(key, found, last) for key, found in groups.items()]
    return {"repo": repo, "tasks": table, "total": picked[0][2] if picked else 0}


def _shown_tasks(conn: apsw.Connection, repo: str, limit: int) -> list[Row]:
    """(unit, task, how many tasks in all) of the ``limit`` tasks shown, flaky first.

    Picked in SQL from the index alone (schema v4): a repository may hold
    thousands of tasks, and only the rows of those shown are read in full.
    """
    return conn.execute(
        "SELECT unit, task, count(*) OVER () FROM tasks INDEXED BY tasks_repo_task"
        " WHERE repo_path = ? GROUP BY unit, task"
        " ORDER BY sum(flaky != 0) DESC, unit, task LIMIT ?",
        (repo, limit),
    ).fetchall()


def _task_rows(conn: apsw.Connection, repo: str, keys: list[tuple[str, int]]) -> list[Row]:
    """The rows of the tasks ``keys`` in ``repo``'s runs, newest run first."""
    return conn.execute(
        "SELECT t.unit, t.task, t.title, t.status, t.stop_reason, t.flaky, t.attempts,"
        " t.duration_ms, t.input_tokens + t.output_tokens + t.cache_read_tokens"
        " + t.cache_write_tokens, t.cost_usd, r.id, r.started_at, t.cost_estimated"
        " FROM json_each(?1) AS k CROSS JOIN tasks AS t INDEXED BY tasks_repo_task"
        " CROSS JOIN runs AS r"
        " WHERE t.repo_path = ?2 AND t.unit = k.value ->> 0 AND t.task = k.value ->> 1"
        " AND r.id = t.run_id ORDER BY r.started_at DESC, r.id DESC",
        (orjson.dumps(keys).decode(), repo),
    ).fetchall()


def _task_row(key: tuple[str, int], rows: list[Any], last: int) -> dict[str, Any]:
    """One task's line of the cross-run table from its rows, newest run first."""
    ended = [r for r in rows if r[3] in ("completed", "failed")]
    durations = [r[7] for r in ended if r[7] is not None]
    title = next((r[2] for r in rows if r[2] is not None), None)
    return {
        "unit": key[0],
        "task": key[1],
        "title": title,
        "runs": len(rows),
        "first_try_pass_rate": (
            sum(1 for r in ended if r[4] == "passed") / len(ended) if ended else None
        ),
        "median_duration_ms": round(median(durations)) if durations else None,
        "median_tokens": round(median(r[8] for r in ended)) if ended else None,
        "median_cost_usd": median(r[9] for r in ended) if ended else None,
        "cost_estimated": any(r[12] for r in ended),
        "flaky_runs": sum(1 for r in rows if r[5]),
        "last": [
            {"run_id": r[10], "started_at": r[11], "stop_reason": r[4], "attempts": r[6]}
            for r in rows[:last]
        ],
    }
