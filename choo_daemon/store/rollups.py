"""Roll-ups kept at write time: what each task and attempt of a run did and cost.

``apply_task_rows`` folds a batch of newly stored ``task.*`` events of one
run into the ``tasks`` and ``task_attempts`` tables and the run's totals
(schema v3), after the writer: ingest pays nothing for them. Each run keeps
``rolled_seq``, how far its events are added up; the database process adds
up the events above it when no batch is waiting (``fold_pending``), a run's
whole rest when the run ends (``fold_run``, from ``complete_run``); what a daemon stopped
short left is added up at the new one's first quiet moment. A task event stored at or below
``rolled_seq`` (a replay filling a gap) is queued by its seq
(``rollup_queue``) if it was really inserted (``new_task_rows``), so a
re-sent event is never counted twice. A running run's roll-ups may lag its
events while ingest is busy; a finished run's are whole. The v3 migration folds the events already
stored (``backfill``).

Work per batch, not per row: the rows are folded in memory (a tool call
only adds one to a counter), then each touched attempt, task and the run
get one statement each.

An attempt's number (``attempt``) counts the run's attempts of a task
across orchestrators: a resumed run starts its tries at 1 again, so an
event's payload ``attempt`` (the orchestrator's ``try``) is matched to the
latest attempt with that try begun before the event.
"""

from __future__ import annotations

import logging
from bisect import insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw
import orjson

from protocol.events import TOKENS
from protocol.redact import cut_tail

log = logging.getLogger("choo.daemon")

# What the agent reported, summed from attempts to tasks to the run.
USAGE = TOKENS
# Summed from attempts to tasks and the run, besides USAGE.
SUMS = (*USAGE, "cost_usd", "agent_ms", "tool_calls")
TOTALS = (*SUMS, "cost_estimated", "attempts")
OUTPUT_TAIL = 2000  # characters of validation output kept per attempt

# An event row as append_events gets it: (run_id, seq, time, type, unit,
# task, pr, payload JSON text, error).
Row = tuple[Any, ...]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any, limit: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    return value[-limit:] if limit is not None else value


@dataclass
class _Attempt:
    attempt: int
    try_: int | None
    start_seq: int
    new: bool = False
    sets: dict[str, Any] = field(default_factory=dict)  # columns set to a value
    adds: dict[str, float] = field(default_factory=dict)  # columns added to (sums)
    estimated: bool = False
    tools: int = 0  # tool calls (task.agent.tool events) in this batch


@dataclass
class _Task:
    attempts: list[_Attempt]
    new: bool = False
    sets: dict[str, Any] = field(default_factory=dict)


class _Fold:
    """The batch's changes to one run, folded in memory, then written once."""

    def __init__(self, conn: apsw.Connection, run_id: str) -> None:
        self.conn = conn
        self.run_id = run_id
        self.tasks: dict[tuple[str, int], _Task] = {}
        # (unit, task, try) -> the attempt its events go to now; cleared when
        # an attempt begins (rows come in seq order).
        self.cache: dict[tuple[str, int, Any], _Attempt] = {}

    def current(self, unit: str, task: int, try_: Any, seq: int, time: str) -> _Attempt:
        """The attempt an event of ``try_`` at ``seq`` belongs to (attempt, cached)."""
        key = (unit, task, try_)
        found = self.cache.get(key)
        if found is None:
            found = self.attempt(self.task(unit, task), _int(try_), seq, time, False)
            self.cache[key] = found
        return found

    def task(self, unit: str, task: int) -> _Task:
        key = (unit, task)
        found = self.tasks.get(key)
        if found is None:
            # One query: no row, no task yet; a row of nulls, a task with no attempt.
            rows: list[Row] = self.conn.execute(
                "SELECT a.attempt, a.try, a.start_seq FROM tasks AS t LEFT JOIN task_attempts"
                " AS a ON a.run_id = t.run_id AND a.unit = t.unit AND a.task = t.task"
                " WHERE t.run_id = ? AND t.unit = ? AND t.task = ? ORDER BY a.start_seq",
                (self.run_id, unit, task),
            ).fetchall()
            found = _Task([_Attempt(a, t, s) for a, t, s in rows if a is not None], new=not rows)
            self.tasks[key] = found
        return found

    def attempt(self, t: _Task, try_: int | None, seq: int, time: str, begin: bool) -> _Attempt:
        """The attempt an event of try ``try_`` at ``seq`` belongs to (begun by it if ``begin``)."""
        found = None if begin else _latest(t, try_, seq)
        if found is not None:
            return found
        made = _Attempt(len(t.attempts) + 1, try_, seq, new=True)
        made.sets["started_at"] = time
        # Kept in start order (a late, re-sent event may begin an earlier one).
        insort(t.attempts, made, key=_start)
        return made

    def write(self) -> None:
        run_adds = dict.fromkeys(TOTALS, 0.0)
        for (unit, task), t in self.tasks.items():
            task_adds = dict.fromkeys(TOTALS, 0.0)
            for a in t.attempts:
                if a.tools:
                    a.adds["tool_calls"] = a.adds.get("tool_calls", 0) + a.tools
                if a.new:
                    task_adds["attempts"] += 1
                    self._insert_attempt(unit, task, a)
                elif a.sets or a.adds or a.estimated:
                    self._update_attempt(unit, task, a)
                for name in SUMS:
                    task_adds[name] += a.adds.get(name, 0)
                if a.estimated:
                    task_adds["cost_estimated"] = 1
            self._write_task(unit, task, t, task_adds)
            if task_adds["attempts"]:
                self.conn.execute(
                    "UPDATE task_attempts SET title = (SELECT title FROM tasks"
                    " WHERE run_id = ?1 AND unit = ?2 AND task = ?3)"
                    " WHERE run_id = ?1 AND unit = ?2 AND task = ?3 AND title IS NULL",
                    (self.run_id, unit, task),
                )
            for name in TOTALS:
                run_adds[name] = (
                    max(run_adds[name], task_adds[name])
                    if name == "cost_estimated"
                    else run_adds[name] + task_adds[name]
                )
        if any(run_adds.values()):
            self.conn.execute(
                "UPDATE runs SET " + ", ".join(_sum_sql(n) for n in TOTALS) + " WHERE id = ?",
                [*(_sum_value(n, run_adds[n]) for n in TOTALS), self.run_id],
            )

    def _insert_attempt(self, unit: str, task: int, a: _Attempt) -> None:
        values: dict[str, Any] = {**a.sets, **{k: _sum_value(k, v) for k, v in a.adds.items()}}
        values["cost_estimated"] = int(a.estimated)
        names = ["run_id", "unit", "task", "attempt", "try", "start_seq", *values]
        self.conn.execute(
            f"INSERT INTO task_attempts({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [self.run_id, unit, task, a.attempt, a.try_, a.start_seq, *values.values()],
        )

    def _update_attempt(self, unit: str, task: int, a: _Attempt) -> None:
        parts = [f"{name} = ?" for name in a.sets]
        params: list[Any] = list(a.sets.values())
        for name, value in a.adds.items():
            parts.append(f"{name} = coalesce({name}, 0) + ?")
            params.append(_sum_value(name, value))
        if a.estimated:
            parts.append("cost_estimated = 1")
        self.conn.execute(
            f"UPDATE task_attempts SET {', '.join(parts)}"
            " WHERE run_id = ? AND unit = ? AND task = ? AND attempt = ?",
            [*params, self.run_id, unit, task, a.attempt],
        )

    def _write_task(self, unit: str, task: int, t: _Task, adds: dict[str, float]) -> None:
        if t.new:
            self.conn.execute(
                "INSERT INTO tasks(run_id, unit, task) VALUES (?, ?, ?)", (self.run_id, unit, task)
            )
        parts = [f"{name} = ?" for name in t.sets]
        params: list[Any] = list(t.sets.values())
        for name in TOTALS:
            if adds[name]:
                parts.append(_sum_sql(name))
                params.append(_sum_value(name, adds[name]))
        if parts:
            self.conn.execute(
                f"UPDATE tasks SET {', '.join(parts)} WHERE run_id = ? AND unit = ? AND task = ?",
                [*params, self.run_id, unit, task],
            )


def _start(a: _Attempt) -> int:
    return a.start_seq


def _latest(t: _Task, try_: int | None, seq: int) -> _Attempt | None:
    """The attempt with try ``try_`` (any, if None) begun last before ``seq``."""
    # Attempts are kept in the order they began, so the last match is the one.
    for a in reversed(t.attempts):
        if a.start_seq < seq and (try_ is None or a.try_ == try_):
            return a
    return None


def _sum_sql(name: str) -> str:
    if name == "cost_estimated":
        return "cost_estimated = max(cost_estimated, ?)"
    return f"{name} = {name} + ?"


def _sum_value(name: str, value: float) -> float | int:
    return value if name == "cost_usd" else int(value)


def _add(a: _Attempt, name: str, value: float | None) -> None:
    if value is not None:
        a.adds[name] = a.adds.get(name, 0) + value


def _fold_row(fold: _Fold, row: Row) -> None:
    _run, seq, time, kind, unit, task, _pr, text, _error = row
    if unit is None or type(task) is not int:
        return
    payload = orjson.loads(text) if text is not None else None
    if type(payload) is not dict:
        payload = {}
    if kind == TOOL:  # most task events by far: one lookup, one count
        fold.current(unit, task, payload.get("attempt"), seq, time).tools += 1
        return
    handler = _ATTEMPT_EVENTS.get(kind)
    if handler is not None:
        if kind == INVOKE:
            fold.cache.clear()  # a new attempt: later events of its try are its own
            a = fold.attempt(fold.task(unit, task), _int(payload.get("attempt")), seq, time, True)
        else:
            a = fold.current(unit, task, payload.get("attempt"), seq, time)
        handler(a, payload)
        return
    t = fold.task(unit, task)
    if kind == "task.started":
        t.sets.update(status="running", started_at=time, finished_at=None, stop_reason=None)
        if isinstance(payload.get("title"), str):
            t.sets["title"] = payload["title"]
    elif kind in _TASK_ENDS:
        _end_task(fold, t, seq, time, kind, payload)


def _end_task(
    fold: _Fold, t: _Task, seq: int, time: str, kind: str, payload: dict[str, Any]
) -> None:
    reason = _text(payload.get("stop_reason"))
    if kind == "task.retry":
        try_ = _int(payload.get("attempt"))
    else:
        try_ = _int(payload.get("attempts"))
        tries = try_ or 0
        if kind == "task.completed" and reason is None:
            reason = "passed" if tries <= 1 else "passed_after_retry"
        flaky = kind == "task.completed" and payload.get("flaky") is True
        t.sets.update(
            status="completed" if kind == "task.completed" else "failed",
            stop_reason=reason,
            flaky=int(flaky),
            finished_at=time,
            duration_ms=_int(payload.get("duration_ms")),
        )
        if isinstance(payload.get("title"), str):
            t.sets["title"] = payload["title"]
    a = _latest(t, try_, seq) or _latest(t, None, seq)
    if a is None:
        return  # an end with no attempt begun (nothing ran): the task's row says it
    a.sets["finished_at"] = time
    if reason is not None:  # an older orchestrator's end says none: keep what was known
        a.sets["stop_reason"] = reason
    if kind == "task.completed" and payload.get("flaky") is True:
        a.sets["flaky"] = 1


def _invoke(a: _Attempt, payload: dict[str, Any]) -> None:
    pass  # fold.attempt began it; its start time is the event's


_RESULT_TEXT = (("session_id", "session_id"), ("model", "model"), ("agent_status", "status"))


def _result(a: _Attempt, payload: dict[str, Any]) -> None:
    for name in USAGE:
        _add(a, name, _int(payload.get(name)))
    _add(a, "cost_usd", _num(payload.get("cost_usd")))
    if payload.get("cost_estimated") is True:
        a.estimated = True
    for column, key in (
        ("session_id", "session_id"),
        ("model", "model"),
        ("agent_status", "status"),
    ):
        value = _text(payload.get(key))
        if value is not None:
            a.sets[column] = value


def _agent_done(a: _Attempt, payload: dict[str, Any]) -> None:
    _add(a, "agent_ms", _int(payload.get("duration_ms")))
    a.sets["exit_code"] = _int(payload.get("exit_code"))


def _backpressure(a: _Attempt, payload: dict[str, Any]) -> None:
    command = payload.get("command")
    if type(command) is str:
        a.sets["validation_command"] = command


def _validated(a: _Attempt, payload: dict[str, Any]) -> None:
    sets = a.sets
    get = payload.get
    command, ms, tail = get("command"), get("duration_ms"), get("output_tail")
    if type(command) is str:
        sets["validation_command"] = command
    if type(ms) is int:
        sets["validation_ms"] = ms
    sets["validation_output"] = cut_tail(tail, OUTPUT_TAIL) if type(tail) is str else None


_ATTEMPT_EVENTS = {
    "task.claude.invoke": _invoke,
    "task.agent.result": _result,
    "task.claude.done": _agent_done,
    "task.backpressure": _backpressure,
    "task.validation.ok": _validated,
    "task.validation.fail": _validated,
}
_TASK_ENDS = frozenset({"task.completed", "task.retry", "task.failed"})
TOOL = "task.agent.tool"
INVOKE = "task.claude.invoke"


def apply_task_rows(conn: apsw.Connection, run_id: str, rows: Iterable[Row]) -> None:
    """Fold newly stored task.* rows of ``run_id`` (seq order) into the roll-ups."""
    fold = _Fold(conn, run_id)
    for row in rows:
        _fold_row(fold, row)
    fold.write()


def new_task_rows(conn: apsw.Connection, group: Sequence[Row], last_seq: int) -> list[Row]:
    """The task.* rows of one run's ``group`` that INSERT OR IGNORE will store.

    Call before the insert. A seq above the run's ``last_seq`` is new
    (unless the batch holds it twice: the first wins, as in the insert);
    one at or below it is new only if no event holds it yet (a replay
    sends old seqs again, which the insert ignores).
    """
    found: list[Row] = []
    top = 0  # seqs rising through the batch (the usual case) are each seen once
    for index, row in enumerate(group):
        seq = row[1]
        if seq > top:
            top = seq
        elif any(earlier[1] == seq for earlier in group[:index]):
            continue  # the same seq earlier in the batch: that one is stored
        if not row[3].startswith("task."):
            continue
        if seq <= last_seq and (
            conn.execute(
                "SELECT 1 FROM events WHERE run_id = ? AND seq = ?", (row[0], seq)
            ).fetchone()
            is not None
        ):
            continue
        found.append(row)
    found.sort(key=_seq)
    return found


def _seq(row: Row) -> int:
    seq: int = row[1]
    return seq


_COLUMNS = "e.run_id, e.seq, e.time, e.type, e.unit, e.task, e.pr, e.payload, e.error"
_TASK_TYPES = "e.type >= 'task.' AND e.type < 'task/'"


def fold_pending(conn: apsw.Connection, limit: int = 2000) -> int:
    """Add up to about ``limit`` events not yet in the roll-ups; how many were looked at.

    In a transaction of its own: the database process calls it when no
    batch waits, so that adding up never slows ingest down. First the
    queued late events, then the runs whose events run past their
    ``rolled_seq``, each in seq order.
    """
    with conn:
        done = _fold_queue(conn, None, limit)
        behind: list[tuple[str, int, int]] = conn.execute(  # type: ignore[assignment]
            "SELECT id, rolled_seq, last_seq FROM runs WHERE rolled_seq < last_seq LIMIT 8"
        ).fetchall()
        for run_id, rolled, last in behind:
            if done >= limit:
                break
            done += _fold_above(conn, run_id, rolled, last, limit - done)
    return done


def _fold_queue(conn: apsw.Connection, run_id: str | None, limit: int) -> int:
    where = "" if run_id is None else " WHERE q.run_id = ?"
    keys: list[tuple[str, int]] = conn.execute(  # type: ignore[assignment]
        "SELECT q.run_id, q.seq FROM rollup_queue q" + where + " ORDER BY q.run_id, q.seq LIMIT ?",
        (limit,) if run_id is None else (run_id, limit),
    ).fetchall()
    by_run: dict[str, list[int]] = {}
    for run, seq in keys:
        by_run.setdefault(run, []).append(seq)
    for run, seqs in by_run.items():
        rows: list[Row] = conn.execute(
            f"SELECT {_COLUMNS} FROM rollup_queue q JOIN events e"
            " ON e.run_id = q.run_id AND e.seq = q.seq"
            " WHERE q.run_id = ? AND q.seq BETWEEN ? AND ? ORDER BY q.seq",
            (run, seqs[0], seqs[-1]),
        ).fetchall()
        if rows:
            apply_task_rows(conn, run, rows)
        conn.execute(
            "DELETE FROM rollup_queue WHERE run_id = ? AND seq BETWEEN ? AND ?",
            (run, seqs[0], seqs[-1]),
        )
    return len(keys)


def _fold_above(conn: apsw.Connection, run_id: str, rolled: int, last: int, limit: int) -> int:
    """Add up the run's task events in (rolled, last], at most ``limit``; move rolled_seq."""
    rows: list[Row] = conn.execute(
        f"SELECT {_COLUMNS} FROM events e WHERE e.run_id = ? AND e.seq > ? AND e.seq <= ?"
        f" AND {_TASK_TYPES} ORDER BY e.seq LIMIT ?",
        (run_id, rolled, last, limit),
    ).fetchall()
    if rows:
        apply_task_rows(conn, run_id, rows)
    upto = rows[-1][1] if len(rows) == limit else last
    conn.execute("UPDATE runs SET rolled_seq = ? WHERE id = ?", (upto, run_id))
    return max(len(rows), 1)


def fold_run(conn: apsw.Connection, run_id: str) -> None:
    """Add up all of the run's events not in its roll-ups yet (at its end, in its transaction)."""
    while _fold_queue(conn, run_id, 10_000):
        pass
    row = conn.execute("SELECT rolled_seq, last_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
    while row is not None and row[0] < row[1]:
        _fold_above(conn, run_id, int(row[0]), int(row[1]), 10_000)
        row = conn.execute(
            "SELECT rolled_seq, last_seq FROM runs WHERE id = ?", (run_id,)
        ).fetchone()


def fold_all(conn: apsw.Connection) -> int:
    """Add up everything not in the roll-ups yet (at start, and in tests); how much."""
    total = 0
    while done := fold_pending(conn):
        total += done
    return total


BACKFILL_CHUNK = 5000


def backfill(conn: apsw.Connection) -> None:
    """Fold every stored task.* event into the (empty) roll-ups, run by run."""
    runs = [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY started_at, id")]
    if not runs:
        return
    log.info("history upgrade (schema v3): adding up the tasks of %d runs", len(runs))
    step = max(1, len(runs) // 10)
    for done, run_id in enumerate(runs, 1):
        after = 0
        while True:
            rows: list[Row] = conn.execute(
                "SELECT run_id, seq, time, type, unit, task, pr, payload, error FROM events"
                " WHERE run_id = ? AND seq > ? AND type >= 'task.' AND type < 'task/'"
                " ORDER BY seq LIMIT ?",
                (run_id, after, BACKFILL_CHUNK),
            ).fetchall()
            if not rows:
                break
            apply_task_rows(conn, run_id, rows)
            after = rows[-1][1]
        if done % step == 0 or done == len(runs):
            log.info("history upgrade (schema v3): %d of %d runs done", done, len(runs))
    # Everything stored is added up now.
    conn.execute(
        "UPDATE runs SET rolled_seq ="
        " coalesce((SELECT max(seq) FROM events WHERE events.run_id = runs.id), 0)"
    )
