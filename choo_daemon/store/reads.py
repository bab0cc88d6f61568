"""Reads of the history, for the web API and ``choo history``.

Every function takes a connection from open_read_connection and runs its
queries inside one read transaction (``with conn:``), so counts, pages and
markers all come from the same committed state. Pages are keyset pages:
they seek on an index (``seq > after``, ``(started_at, id) <`` a cursor) and
never use OFFSET, so the deepest page costs what the first one does.

The reads marked ``@served`` are what the web API may ask for, by name: the
daemon's ``Reader`` runs ``SERVED[name](conn, ...)`` in its pool, so a new
API route is one served function here and one handler in ``choo_web.app``.
A served read that takes a ``run`` takes a run id or a unique prefix of one,
and raises (UnknownRun, NoGraph, ...) rather than answer None.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Callable
from itertools import islice
from operator import itemgetter
from typing import Any, Final, TypeVar

import apsw
import orjson

from choo_daemon.store.errors import AmbiguousRun, BadCursor, BadParameter, NoGraph, UnknownRun
from choo_daemon.store.records import (
    Counts,
    Event,
    EventPage,
    Graph,
    Marker,
    Repo,
    RunDetail,
    RunPage,
    RunSummary,
    Totals,
)
from choo_web.eventdict import event_from_row
from protocol.events import RUN_RESUMED, RUN_STOPPED, TASK_DONE_TYPES, UNIT_EVENT_TYPES
from protocol.messages import RUN_STATUSES
from protocol.times import parse_iso_utc

MAX_RUNS_PAGE: Final = 500
MAX_EVENTS_PAGE: Final = 1000

# A database row; its columns' types are fixed by the SELECT that made it.
Row = tuple[Any, ...]

F = TypeVar("F", bound=Callable[..., Any])

# The reads the web API may ask for, by name: name -> fn(conn, *args, **kwargs).
SERVED: dict[str, Callable[..., Any]] = {}


def served(fn: F) -> F:
    """Offer ``fn`` to the web API under its own name (see the module docstring)."""
    SERVED[fn.__name__] = fn
    return fn


# --- runs -----------------------------------------------------------------

_RUN_COLUMNS = (
    "id, repo_path, status, started_at, completed_at, parallelism, total_units,"
    " completed_units, failed_units, blocked_units, resume_count, dry_run, tasks_dir,"
    " error, event_count, last_seq, cost_usd, cost_estimated"
)


def _duration_ms(started_at: str, completed_at: str | None) -> int | None:
    if completed_at is None:
        return None
    try:
        delta = parse_iso_utc(completed_at) - parse_iso_utc(started_at)
    except ValueError:
        return None
    return round(delta.total_seconds() * 1000)


def _run(row: Row) -> RunSummary:
    (run_id, repo, status, started, completed, par, total, done, failed, blocked,
     resumes, dry, tasks_dir, error, event_count, last_seq, cost, estimated) = row  # fmt: skip
    return {
        "id": run_id,
        "repo_path": repo,
        "status": status,
        "started_at": started,
        "completed_at": completed,
        "duration_ms": _duration_ms(started, completed),
        "parallelism": par,
        "total_units": total,
        "completed_units": done,
        "failed_units": failed,
        "blocked_units": blocked,
        "resume_count": resumes,
        "dry_run": bool(dry),
        "tasks_dir": tasks_dir,
        "error": error,
        "event_count": event_count,
        "last_seq": last_seq,
        "cost_usd": cost,
        "cost_estimated": bool(estimated),
    }


def encode_cursor(started_at: str, run_id: str) -> str:
    raw = orjson.dumps([started_at, run_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (started_at, id) a cursor stands for; BadCursor if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise BadCursor(cursor) from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) for part in value)
    ):
        raise BadCursor(cursor)
    return value[0], value[1]


@served
def list_runs(
    conn: apsw.Connection,
    *,
    repo: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    before: str | None = None,
    oldest: bool = False,
) -> RunPage:
    """A page of runs, newest first (started_at, then id), and the total matching.

    The page is the first one, or the one after ``cursor`` (older runs), or
    the one just before ``before`` (newer runs), or with ``oldest`` the last
    one. ``next_cursor`` and ``prev_cursor`` lead to the older and newer
    pages; ``newer`` is how many matching runs come before this page.
    """
    if status is not None and status not in RUN_STATUSES:
        raise BadParameter("status", status, "one of " + ", ".join(RUN_STATUSES))
    if not 1 <= limit <= MAX_RUNS_PAGE:
        raise BadParameter("limit", limit, f"1 to {MAX_RUNS_PAGE}")
    if sum((cursor is not None, before is not None, oldest)) > 1:
        raise BadParameter("cursor", cursor or before or "", "only one of cursor, before, oldest")
    filters: list[str] = []
    params: list[apsw.SQLiteValue] = []
    if repo is not None:
        filters.append("repo_path = ?")
        params.append(repo)
    if status is not None:
        filters.append("status = ?")
        params.append(status)
    where = " AND ".join(filters) or "1"
    with conn:
        total: int = conn.execute(f"SELECT count(*) FROM runs WHERE {where}", params).get
        rows: list[Row] = []
        if before is not None or oldest:
            # Read from the old end up, then turn the page around.
            rows = _run_rows(conn, where, params, ">", before, limit + 1, "ASC")[::-1]
            if before is not None and len(rows) <= limit:
                rows, cursor = [], None  # the newest runs: the first page, full
            else:
                rows = rows[-limit:]
        if not rows:
            rows = _run_rows(conn, where, params, "<", cursor, limit, "DESC")
        runs = [_run(row) for row in rows]
        if runs:
            ahead = _newer(conn, where, params, runs[0]["started_at"], runs[0]["id"])
        else:
            ahead = total if cursor is not None else 0
    return {
        "runs": runs,
        "next_cursor": _cursor_of(runs[-1]) if runs and ahead + len(runs) < total else None,
        "prev_cursor": _cursor_of(runs[0]) if runs and ahead > 0 else None,
        "total": total,
        "newer": ahead,
    }


def _cursor_of(run: RunSummary) -> str:
    return encode_cursor(run["started_at"], run["id"])


def _run_rows(
    conn: apsw.Connection,
    where: str,
    params: list[apsw.SQLiteValue],
    op: str,
    cursor: str | None,
    limit: int,
    order: str,
) -> list[Row]:
    """Up to ``limit`` runs in (started_at, id) ``order``, from the cursor's position
    (``op`` "<": older than it, ">": newer), or from that end without one."""
    page_where, page_params = where, list(params)
    if cursor is not None:
        page_where += f" AND (started_at, id) {op} (?, ?)"
        page_params.extend(decode_cursor(cursor))
    rows: list[Row] = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE {page_where}"
        f" ORDER BY started_at {order}, id {order} LIMIT ?",
        [*page_params, limit],
    ).fetchall()
    return rows


def _newer(
    conn: apsw.Connection, where: str, params: list[apsw.SQLiteValue], started_at: str, run_id: str
) -> int:
    """How many matching runs come before (started_at, run_id) in the list: the newer ones."""
    found: int = conn.execute(
        f"SELECT count(*) FROM runs WHERE {where} AND (started_at, id) > (?, ?)",
        [*params, started_at, run_id],
    ).get
    return found


def _markers(conn: apsw.Connection, run_id: str) -> list[Marker]:
    markers: list[Marker] = []
    for seq, time, kind, payload in conn.execute(
        "SELECT seq, time, type, payload FROM events INDEXED BY events_run_type_seq"
        " WHERE run_id = ? AND type IN (?, ?) ORDER BY seq",
        (run_id, RUN_STOPPED, RUN_RESUMED),
    ):
        parsed = orjson.loads(payload) if payload is not None else None
        reason = parsed.get("reason") if isinstance(parsed, dict) else None
        markers.append({"seq": seq, "time": time, "type": kind, "reason": reason})
    return markers


def get_run(conn: apsw.Connection, run_id: str) -> RunDetail | None:
    """One run with its stop/resume markers, or None if there is no such run."""
    with conn:
        row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        summary = _run(row)
        markers = _markers(conn, run_id)
        has_graph = (
            conn.execute("SELECT 1 FROM graphs WHERE run_id = ?", (run_id,)).fetchone() is not None
        )
        totals = _totals(conn, run_id)
    return RunDetail(**summary, markers=markers, has_graph=has_graph, totals=totals)


def _totals(conn: apsw.Connection, run_id: str) -> Totals:
    """The run's sums over its task attempts (kept by rollups.py as events are written)."""
    row: Row = conn.execute(
        "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,"
        " cost_estimated, agent_ms, attempts, tool_calls FROM runs WHERE id = ?",
        (run_id,),
    ).fetchall()[0]
    return {
        "input_tokens": row[0],
        "output_tokens": row[1],
        "cache_read_tokens": row[2],
        "cache_write_tokens": row[3],
        "cost_usd": row[4],
        "cost_estimated": bool(row[5]),
        "agent_ms": row[6],
        "attempts": row[7],
        "tool_calls": row[8],
    }


@served
def resolve_run_id(conn: apsw.Connection, prefix: str) -> str:
    """The run id equal to ``prefix``, else the only one starting with it."""
    if not prefix:
        raise BadParameter("run id", prefix, "a run id or the start of one")
    with conn:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (prefix,)).fetchone() is not None:
            return prefix
        found: list[str] = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                (prefix, _successor(prefix)),
            )
        ]
    if not found:
        raise UnknownRun(prefix)
    if len(found) > 1:
        raise AmbiguousRun(prefix, found)
    return found[0]


@served
def list_repos(conn: apsw.Connection) -> list[Repo]:
    """Repositories with history, the most recently run first."""
    with conn:
        rows: list[Row] = conn.execute(
            "SELECT repo_path, count(*), max(started_at) AS last FROM runs"
            " GROUP BY repo_path ORDER BY last DESC, repo_path"
        ).fetchall()
    return [{"repo_path": r[0], "run_count": r[1], "last_started_at": r[2]} for r in rows]


def counts(conn: apsw.Connection) -> Counts:
    """How many runs and events the history holds (events from the per-run counters)."""
    with conn:
        row: Row = conn.execute(
            "SELECT count(*), coalesce(sum(event_count), 0) FROM runs"
        ).fetchall()[0]
    return {"runs": row[0], "events": row[1]}


def get_graph(conn: apsw.Connection, run_id: str) -> Graph | None:
    """The run's dependency graph, or None if none was stored (or no such run)."""
    with conn:
        row = conn.execute(
            "SELECT nodes, edges, levels FROM graphs WHERE run_id = ?", (run_id,)
        ).fetchone()
    if row is None:
        return None
    return {
        "nodes": orjson.loads(row[0]),
        "edges": orjson.loads(row[1]),
        "levels": orjson.loads(row[2]),
    }


@served
def run_detail(conn: apsw.Connection, run: str) -> RunDetail:
    """The run ``run`` names, with its markers (get_run)."""
    with conn:
        run_id = resolve_run_id(conn, run)
        detail = get_run(conn, run_id)
    if detail is None:  # cannot happen inside one transaction; for the type checker
        raise UnknownRun(run_id)
    return detail


@served
def run_graph(conn: apsw.Connection, run: str) -> Graph:
    """The dependency graph of the run ``run`` names; NoGraph if none was stored."""
    with conn:
        run_id = resolve_run_id(conn, run)
        graph = get_graph(conn, run_id)
    if graph is None:
        raise NoGraph(run_id, "stored (it never got as far as planning)")
    return graph


# --- events ---------------------------------------------------------------

# As committed (store.EventRow): the web's event_from_row reads them.
_EVENT_COLUMNS = "run_id, seq, time, type, unit, task, pr, payload, error"


def _successor(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix``."""
    last = ord(prefix[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:  # not encodable: skip the surrogates
        last = 0xE000
    return prefix[:-1] + chr(last) if last <= 0x10FFFF else prefix + "\U0010ffff"


def _type_bounds(kind: str) -> tuple[str, str]:
    return kind, _successor(kind)


def _types_in_range(conn: apsw.Connection, run_id: str, low: str, high: str) -> list[str]:
    """The distinct event types of a run in [low, high), one index seek each."""
    found: list[str] = []
    bound, op = low, ">="
    while True:
        row = conn.execute(
            "SELECT type FROM events INDEXED BY events_run_type_seq"
            f" WHERE run_id = ? AND type {op} ? AND type < ? ORDER BY type LIMIT 1",
            (run_id, bound, high),
        ).fetchone()
        if row is None:
            return found
        found.append(row[0])
        bound, op = row[0], ">"


def _seek(
    conn: apsw.Connection,
    index: str,
    where: str,
    params: list[apsw.SQLiteValue],
    limit: int,
    order: str = "",
) -> apsw.Cursor:
    # Naming the index turns a plan regression into an error instead of a
    # slow deep page; every shape below is ordered by the index's last column.
    return conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events INDEXED BY {index} WHERE {where}"
        f" ORDER BY seq {order} LIMIT ?",
        [*params, limit],
    )


# Above every seq: the open end of a seq range.
_NO_END: Final = 2**63 - 1


# How to find a filter's events, one seek of an index: (index, what the
# index finds, its parameters, what is left to check on each row (a lookup
# of the row; "1": nothing), its parameters).
Shape = tuple[str, str, list[Any], str, list[Any]]


def _shapes(conn: apsw.Connection, run_id: str, kind: str | None, unit: str | None) -> list[Shape]:
    """The seeks that find the matching events, each ordered by seq on its index."""
    if kind is not None and not kind.endswith("."):
        seek, params = "run_id = ? AND type = ?", [run_id, kind]
        if unit is not None:
            return [("events_run_type_seq", seek, params, "unit = ?", [unit])]
        return [("events_run_type_seq", seek, params, "1", [])]
    if unit is not None:
        seek, params = "run_id = ? AND unit = ?", [run_id, unit]
        if kind is not None:
            return [
                (
                    "events_run_unit_seq",
                    seek,
                    params,
                    "type >= ? AND type < ?",
                    [*_type_bounds(kind)],
                )
            ]
        return [("events_run_unit_seq", seek, params, "1", [])]
    if kind is not None:
        # A range on type cannot also come out ordered by seq, so a prefix is
        # one exact-type seek per type present, merged by seq.
        return [
            ("events_run_type_seq", "run_id = ? AND type = ?", [run_id, exact], "1", [])
            for exact in _types_in_range(conn, run_id, *_type_bounds(kind))
        ]
    return [("events_run_seq", "run_id = ?", [run_id], "1", [])]


def _select_events(
    conn: apsw.Connection,
    run_id: str,
    kind: str | None,
    unit: str | None,
    span: tuple[int, int],
    limit: int,
    *,
    backward: bool = False,
) -> list[Row]:
    """Rows of the matching events with ``low < seq < high`` (``span``), at most
    ``limit``: the first ones in seq order, or (``backward``) the last ones in
    descending seq order."""
    order = "DESC" if backward else ""
    seeks = [
        _seek(
            conn,
            index,
            f"{where} AND {rest} AND seq > ? AND seq < ?",
            [*params, *rest_params, *span],
            limit,
            order,
        )
        for index, where, params, rest, rest_params in _shapes(conn, run_id, kind, unit)
    ]
    try:
        # Each seek yields lazily, so only about `limit` rows are read in all.
        merged = heapq.merge(*seeks, key=itemgetter(1), reverse=backward)
        return list(islice(merged, limit))
    finally:
        # Unfinished statements would hold the read snapshot (and block
        # checkpoints) past the end of the transaction.
        for seek in seeks:
            seek.close()


def _any_event(
    conn: apsw.Connection, run_id: str, kind: str | None, unit: str | None, span: tuple[int, int]
) -> bool:
    """Whether a matching event has ``low < seq < high``."""
    return bool(_select_events(conn, run_id, kind, unit, span, 1))


# A count reads at most COUNT_CAP index entries, or, for a filter that no
# one index answers (a type and a unit), LOOKUP_CAP rows (each a lookup in
# the table, scattered over the run): a few ms either way, so that a page
# with its count costs about the same whatever the filter and the run's size
# (DESIGN.md §9: an events page p95 <= 15 ms; scripts/bench/query.py).
# Past it the count is a lower bound (``total_exact`` false).
COUNT_CAP: Final = 5_000
LOOKUP_CAP: Final = 1_000


def _count_events(
    conn: apsw.Connection, run_id: str, kind: str | None, unit: str | None
) -> tuple[int, bool]:
    """(matching events in the run, whether that is all of them)."""
    if kind is None and unit is None:  # kept as events are written
        total: int = conn.execute("SELECT event_count FROM runs WHERE id = ?", (run_id,)).get
        return total, True
    shapes = _shapes(conn, run_id, kind, unit)
    found, budget = 0, COUNT_CAP if all(shape[3] == "1" for shape in shapes) else LOOKUP_CAP
    for index, where, params, rest, rest_params in shapes:
        row: Row = conn.execute(
            f"SELECT count(*), coalesce(sum({rest}), 0) FROM"
            f" (SELECT type, unit FROM events INDEXED BY {index} WHERE {where} LIMIT ?)",
            [*rest_params, *params, budget],
        ).fetchall()[0]
        found += int(row[1])
        budget -= int(row[0])
        if budget <= 0:
            return found, False
    return found, True


def _event(row: Row) -> Event:
    return event_from_row(row, orjson.loads)


@served
def run_events(
    conn: apsw.Connection,
    run: str,
    *,
    type: str | None = None,
    unit: str | None = None,
    after: int = 0,
    before: int | None = None,
    limit: int = 100,
    count: bool = False,
) -> EventPage:
    """A page of the events of the run ``run`` names (an id or its start),
    in seq order: the first ``limit`` with seq above ``after``, or, given
    ``before``, the last ``limit`` of those below ``before`` (a page back).

    ``type`` matches exactly, or as a prefix when it ends with "." ("task."
    matches every task.* type). ``next_after`` is the seq to pass as
    ``after`` for the next page, ``prev_before`` the one to pass as
    ``before`` for the previous page; each None when no matching event lies
    that way. With ``count``, ``total`` is how many events match in the
    whole run (``total_exact`` False: at least COUNT_CAP); else both None.
    Raises UnknownRun or AmbiguousRun if ``run`` names no one run.
    """
    check_events_page(type, after, before, limit)
    with conn:
        run_id = resolve_run_id(conn, run)
        if before is None:
            rows = _select_events(conn, run_id, type, unit, (after, _NO_END), limit + 1)
            page, later = rows[:limit], len(rows) > limit
            earlier = (
                bool(page) and after > 0 and _any_event(conn, run_id, type, unit, (0, page[0][1]))
            )
        else:
            rows = _select_events(
                conn, run_id, type, unit, (after, before), limit + 1, backward=True
            )
            page = rows[:limit][::-1]
            earlier = len(rows) > limit or (
                bool(page) and after > 0 and _any_event(conn, run_id, type, unit, (0, page[0][1]))
            )
            later = bool(page) and _any_event(conn, run_id, type, unit, (page[-1][1], _NO_END))
        total, exact = _count_events(conn, run_id, type, unit) if count else (None, None)
    events = [_event(row) for row in page]
    return {
        "events": events,
        "next_after": events[-1]["seq"] if later else None,
        "prev_before": events[0]["seq"] if earlier else None,
        "total": total,
        "total_exact": exact,
    }


def check_events_page(type: str | None, after: int, before: int | None, limit: int) -> None:
    """BadParameter unless these make an events page (run_events and the live-only runs')."""
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        raise BadParameter("limit", limit, f"1 to {MAX_EVENTS_PAGE}")
    if after < 0:
        raise BadParameter("after", after, "a seq, 0 or more")
    if before is not None and before < 1:
        raise BadParameter("before", before, "a seq, 1 or more")
    if type in ("", "."):
        raise BadParameter("type", type, 'an event type, or a prefix ending in "." like "task."')


@served
def unit_events(conn: apsw.Connection, run_id: str, upto: int) -> list[dict[str, Any]]:
    """The run's events a unit's outcome is folded from (``UNIT_EVENT_TYPES``),
    those with seq up to ``upto``, in seq order: one query, for ``/units``.

    Each is a dict of the fields ``fold_units`` reads (``seq``, ``time``,
    ``type``, ``unit``, ``task``, ``payload``, ``error``). A task's end only
    counts for its unit and task number, so its payload is not read: most of
    a big run's unit events are task ends, and parsing theirs was most of
    the time ``/units`` took.
    """
    marks = ", ".join("?" * len(UNIT_EVENT_TYPES))
    ends = ", ".join("?" * len(TASK_DONE_TYPES))
    with conn:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise UnknownRun(run_id)
        rows = conn.execute(
            f"SELECT seq, time, type, unit, task, iif(type IN ({ends}), NULL, payload), error"
            " FROM events INDEXED BY events_run_type_seq"
            f" WHERE run_id = ? AND type IN ({marks}) AND seq <= ? ORDER BY seq",
            (*TASK_DONE_TYPES, run_id, *UNIT_EVENT_TYPES, upto),
        )
        found = [
            {
                "seq": seq,
                "time": time,
                "type": kind,
                "unit": unit,
                "task": task,
                "payload": None if payload is None else orjson.loads(payload),
                "error": error,
            }
            for seq, time, kind, unit, task, payload, error in rows
        ]
    return found
