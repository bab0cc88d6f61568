"""Writes to the history: the daemon's single writer calls these.

Every function here runs inside a transaction the caller holds (``with
conn:`` around a whole batch, on a connection from open_write_connection);
none opens or commits one itself, so a batch of many calls commits, and is
acked, as one unit. Calling one outside a transaction is a bug and raises
RuntimeError, because each statement would then commit (and fsync) alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import apsw
import orjson

from choo_daemon.store.errors import BadParameter, NotOwner, RunExists, UnknownRun
from choo_daemon.store.rollups import fold_run, new_task_rows
from choo_daemon.store.search import run_event_ids, unindex_events
from protocol.events import RUN_RESUMED, RUN_STOPPED
from protocol.messages import FINAL_STATUSES
from protocol.times import is_iso_utc

# An event as the store takes it (``add_rows`` makes them): the events
# table's columns in their order, so that a row is bound to the INSERT as it
# is; the payload is JSON text, scrubbed of secrets. A plain tuple, read by
# the positions in ``Col``: not a NamedTuple, because ingest makes hundreds
# of thousands a second, and a tuple subclass cost the database process about
# 1 µs more per event (built through tuple.__new__, copied by executemany, and
# kept tracked by the garbage collector, which untracks only plain tuples).
EventRow = tuple[str, int, str, str, str | None, int | None, int | None, str | None, str | None]


class Col:
    """The position of each field of an ``EventRow``."""

    RUN: Final = 0
    SEQ: Final = 1
    TIME: Final = 2
    TYPE: Final = 3
    UNIT: Final = 4
    TASK: Final = 5
    PR: Final = 6
    PAYLOAD: Final = 7
    ERROR: Final = 8


_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events(run_id, seq, time, type, unit, task, pr, payload, error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _compact(value: object) -> str:
    return orjson.dumps(value).decode()


def _require_transaction(conn: apsw.Connection) -> None:
    if not conn.in_transaction:
        raise RuntimeError("history store writes must run inside `with conn:` (one batch)")


def _last_seq(conn: apsw.Connection, run_id: str) -> int:
    """The run's highest stored seq; UnknownRun if there is no such run."""
    row = conn.execute("SELECT last_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRun(run_id)
    last: int = row[0]
    return last


def _last_and_rolled_seq(conn: apsw.Connection, run_id: str) -> tuple[int, int]:
    """The run's highest stored seq and how far it is added up; UnknownRun if no such run."""
    row = conn.execute("SELECT last_seq, rolled_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRun(run_id)
    return int(row[0]), int(row[1])


def _status_and_last_seq(conn: apsw.Connection, run_id: str) -> tuple[str, int]:
    """The run's status and highest stored seq; UnknownRun if there is no such run."""
    row = conn.execute("SELECT status, last_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRun(run_id)
    return str(row[0]), int(row[1])


def run_exists(conn: apsw.Connection, run_id: str) -> bool:
    return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None


def create_run(
    conn: apsw.Connection,
    *,
    run_id: str,
    repo_path: str,
    started_at: str,
    parallelism: int,
    total_units: int,
    tasks_dir: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
) -> bool:
    """Record a new running run; False if this very request was applied already.

    Two runs never merge: an id that exists is refused (RunExists) unless
    the request is a re-sent copy of the one that created it: the same
    ``token``, or, from a client that sends none, the same repository and
    start time.
    """
    _require_transaction(conn)
    if not is_iso_utc(started_at):
        raise BadParameter("started_at", started_at, "UTC ISO 8601 like 2026-01-20T14:30:52.123Z")
    row = conn.execute(
        "SELECT repo_path, started_at, start_token FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    if row is not None:
        stored_repo, stored_start, stored_token = row
        resent = (
            token == stored_token
            if token is not None or stored_token is not None
            else stored_start == started_at
        )
        if stored_repo != repo_path or not resent:
            raise RunExists(run_id, str(stored_repo), repo_path)
        return False
    conn.execute(
        "INSERT INTO runs(id, repo_path, started_at, parallelism, total_units, tasks_dir, dry_run,"
        " start_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, repo_path, started_at, parallelism, total_units, tasks_dir, int(dry_run), token),
    )
    return True


def append_events(conn: apsw.Connection, rows: Sequence[EventRow]) -> int:
    """Store events, ignoring any (run_id, seq) already stored; return how many were new.

    Raises UnknownRun, before writing anything, if a row names a missing run.
    Keeps runs.last_seq, runs.event_count and runs.resume_count up to date
    with one UPDATE per run: a ``run.resumed`` row stored here (an imported
    run's marker) counts as a resume, as one written by append_resume_marker does.
    The roll-ups are added up later (rollups.py): from the events above the
    run's ``rolled_seq``, and from the queue, where a task event stored at
    or below it goes (once: a re-sent one is not queued again).
    """
    _require_transaction(conn)
    by_run: dict[str, list[EventRow]] = {}
    resumed: set[str] = set()  # runs with run.resumed rows in this call (rare)
    for row in rows:
        group = by_run.get(row[Col.RUN])
        if group is None:
            by_run[row[Col.RUN]] = group = []
        group.append(row)
        if row[Col.TYPE] == RUN_RESUMED:
            resumed.add(row[Col.RUN])
    seqs = {run_id: _last_and_rolled_seq(conn, run_id) for run_id in by_run}  # runs exist?
    inserted = 0
    for run_id, group in by_run.items():
        last, rolled = seqs[run_id]
        # Rows above rolled_seq are added up later from the events table;
        # only a task event stored at or below it (a replay filling a gap,
        # rare) is queued by its seq.
        late = [row for row in group if row[Col.SEQ] <= rolled]
        tasks = new_task_rows(conn, late, last) if late else []
        before = conn.total_changes()
        resumes = _insert_resumes(conn, group) if run_id in resumed else 0
        conn.executemany(_INSERT_EVENT, group)
        added = conn.total_changes() - before
        if tasks:
            conn.executemany(
                "INSERT OR IGNORE INTO rollup_queue(run_id, seq) VALUES (?, ?)",
                [(run_id, row[Col.SEQ]) for row in tasks],
            )
        if added:
            conn.execute(
                "UPDATE runs SET last_seq = max(last_seq, ?), event_count = event_count + ?,"
                " resume_count = resume_count + ? WHERE id = ?",
                (max(r[Col.SEQ] for r in group), added, resumes, run_id),
            )
        inserted += added
    return inserted


def _insert_resumes(conn: apsw.Connection, group: Sequence[EventRow]) -> int:
    """Insert a run's run.resumed rows one by one; return how many were new.

    One at a time, so that a marker already stored (a replay) is told apart
    from a new one; the batch insert that follows ignores these rows.
    """
    new = 0
    for row in group:
        if row[Col.TYPE] == RUN_RESUMED:
            conn.execute(_INSERT_EVENT, row)
            new += conn.changes()
    return new


def store_graph(
    conn: apsw.Connection, run_id: str, nodes: object, edges: object, levels: object
) -> None:
    """Store the run's dependency graph (JSON-encoded), replacing an earlier one."""
    _require_transaction(conn)
    _last_seq(conn, run_id)
    conn.execute(
        "INSERT INTO graphs(run_id, nodes, edges, levels) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(run_id) DO UPDATE SET"
        " nodes = excluded.nodes, edges = excluded.edges, levels = excluded.levels",
        (run_id, _compact(nodes), _compact(edges), _compact(levels)),
    )


def _append_marker(
    conn: apsw.Connection,
    run_id: str,
    seq: int,
    time: str,
    kind: str,
    payload: Mapping[str, str | None],
) -> None:
    conn.execute(
        "INSERT INTO events(run_id, seq, time, type, payload) VALUES (?, ?, ?, ?, ?)",
        (run_id, seq, time, kind, _compact(payload)),
    )


def append_resume_marker(
    conn: apsw.Connection,
    run_id: str,
    *,
    time: str,
    token: str,
    reason: str | None = None,
    take_over: bool = False,
) -> int:
    """Append ``run.resumed`` and set the run running again; return the marker's seq.

    ``token`` makes a retried request harmless: if the run's latest
    ``run.resumed`` carries this token (the resuming client sent it again,
    after a reconnect, to take its run back), its seq is returned and
    nothing changes. Events of the resumed run continue after that seq. An
    earlier marker with this token raises NotOwner: the run was resumed by
    another since.
    """
    _require_transaction(conn)
    status, last = _status_and_last_seq(conn, run_id)
    markers = conn.execute(
        "SELECT seq, payload FROM events WHERE run_id = ? AND type = ? ORDER BY seq DESC",
        (run_id, RUN_RESUMED),
    )
    for index, (marker_seq, payload) in enumerate(markers):
        stored = orjson.loads(payload) if payload is not None else None
        if isinstance(stored, dict) and stored.get("resume_id") == token:
            if index > 0:  # a later resume took the run: this one is stale
                raise NotOwner(run_id)
            seq: int = marker_seq
            return seq
    row = conn.execute(
        "SELECT seq FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
    ).fetchone()
    seq = max(last, row[0] if row is not None else 0) + 1
    if take_over and status == "running":
        # Taken over while the daemon still waited for the run's orchestrator:
        # the history shows where that one stopped and this one began.
        stop = {
            "reason": "taken over by a resume before its orchestrator came back",
            "by": "daemon",
        }
        _append_marker(conn, run_id, seq, time, RUN_STOPPED, stop)
        conn.execute("UPDATE runs SET event_count = event_count + 1 WHERE id = ?", (run_id,))
        seq += 1
    _append_marker(conn, run_id, seq, time, RUN_RESUMED, {"reason": reason, "resume_id": token})
    # A resume makes a stop the daemon wrote on its own final: the run did stop.
    conn.execute(
        "UPDATE runs SET status = 'running', completed_at = NULL, resume_count = resume_count + 1,"
        " last_seq = ?, event_count = event_count + 1, held_seq = NULL WHERE id = ?",
        (seq, run_id),
    )
    return seq


def complete_run(
    conn: apsw.Connection,
    run_id: str,
    *,
    status: str,
    completed_at: str,
    completed_units: int,
    failed_units: int,
    blocked_units: int,
    error: str | None = None,
) -> None:
    """Record the run's end: final status, time and unit counts."""
    _require_transaction(conn)
    if status not in FINAL_STATUSES:
        raise BadParameter("status", status, "one of " + ", ".join(FINAL_STATUSES))
    retract_held_marker(conn, run_id)
    conn.execute(
        "UPDATE runs SET status = ?, completed_at = ?, completed_units = ?, failed_units = ?,"
        " blocked_units = ?, error = ? WHERE id = ?",
        (status, completed_at, completed_units, failed_units, blocked_units, error, run_id),
    )
    if conn.changes() == 0:
        raise UnknownRun(run_id)
    fold_run(conn, run_id)  # a finished run's roll-ups are whole when its end is acked


def mark_stopped(conn: apsw.Connection, run_id: str, *, time: str, reason: str) -> int | None:
    """Stop a run left running (its orchestrator went away); return the marker's seq.

    Appends ``run.stopped`` with the reason and sets the run stopped. Returns
    None, changing nothing, if the run is not running. The marker is held
    (``runs.held_seq``): the seq belongs to the run's orchestrator, so if its
    own events or its end arrive after all, the marker is retracted
    (``retract_held_marker``); a resume makes it final.
    """
    _require_transaction(conn)
    status, last = _status_and_last_seq(conn, run_id)
    if status != "running":
        return None
    seq = last + 1
    _append_marker(conn, run_id, seq, time, RUN_STOPPED, {"reason": reason, "by": "daemon"})
    conn.execute(
        "UPDATE runs SET status = 'stopped', completed_at = ?, last_seq = ?, held_seq = ?,"
        " event_count = event_count + 1 WHERE id = ?",
        (time, seq, seq, run_id),
    )
    return seq


def retract_held_marker(conn: apsw.Connection, run_id: str) -> bool:
    """Take back the daemon's own ``run.stopped`` of a run, if it holds one.

    The run's orchestrator spoke again (its events, its end): the marker goes,
    and the run is running again until its end arrives or the grace period
    runs out once more (a new marker, after the run's last event). True if a
    marker was retracted.
    """
    _require_transaction(conn)
    row = conn.execute("SELECT held_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or row[0] is None:
        return False
    ids = [
        found[0]
        for found in conn.execute(
            "SELECT id FROM events WHERE run_id = ? AND seq = ? AND type = ?",
            (run_id, row[0], RUN_STOPPED),
        )
    ]
    conn.execute(
        "DELETE FROM events WHERE run_id = ? AND seq = ? AND type = ?",
        (run_id, row[0], RUN_STOPPED),
    )
    removed = conn.changes()
    unindex_events(conn, ids)
    conn.execute(
        "UPDATE runs SET status = 'running', completed_at = NULL, held_seq = NULL,"
        " event_count = event_count - ?2,"
        " last_seq = coalesce((SELECT max(seq) FROM events WHERE run_id = ?1), 0) WHERE id = ?1",
        (run_id, removed),
    )
    return True


def held_runs(conn: apsw.Connection) -> set[str]:
    """The runs whose last word is a marker the daemon wrote on its own."""
    return {row[0] for row in conn.execute("SELECT id FROM runs WHERE held_seq IS NOT NULL")}


def running_owner_tokens(conn: apsw.Connection) -> list[tuple[str, str | None]]:
    """(id, owner token) of the runs whose status is running, oldest first.

    A run's owner token is the resume_id of its latest ``run.resumed``, else
    the token of its run.start (PROTOCOL.md section 7, *Owners*).
    """
    runs = conn.execute(
        "SELECT id, start_token FROM runs WHERE status = 'running' ORDER BY started_at, id"
    ).fetchall()
    tokens: list[tuple[str, str | None]] = []
    for run_id, token in runs:
        marker = conn.execute(
            "SELECT payload FROM events WHERE run_id = ? AND type = ? ORDER BY seq DESC LIMIT 1",
            (run_id, RUN_RESUMED),
        ).fetchone()
        stored = orjson.loads(marker[0]) if marker is not None and marker[0] else None
        if isinstance(stored, dict) and isinstance(stored.get("resume_id"), str):
            token = stored["resume_id"]
        tokens.append((str(run_id), token if isinstance(token, str) else None))
    return tokens


def running_runs(conn: apsw.Connection) -> list[str]:
    """Ids of the runs whose status is running, oldest first."""
    cursor = conn.execute("SELECT id FROM runs WHERE status = 'running' ORDER BY started_at, id")
    return [row[0] for row in cursor]


def delete_runs_older_than(conn: apsw.Connection, cutoff_iso: str, *, limit: int) -> list[str]:
    """Delete up to ``limit`` finished runs started before the cutoff; return their ids.

    Age is the start time (``history.retention_days`` counts from when a run
    began). Running runs are never deleted. Call again, in a new transaction,
    until fewer than ``limit`` ids come back, so that no single transaction
    holds the write lock for long. SQLite reuses the freed pages.
    """
    _require_transaction(conn)
    if limit < 1:
        raise BadParameter("limit", limit, "a positive number of runs")
    ids = [row["id"] for row in old_runs(conn, cutoff_iso, limit=limit)]
    for run_id in ids:
        # Explicit deletes, so retention does not depend on foreign_keys=ON.
        event_ids = run_event_ids(conn, run_id)
        conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
        unindex_events(conn, event_ids)
        conn.execute("DELETE FROM graphs WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM task_attempts WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM rollup_queue WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM otlp_outbox WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM tasks WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    return ids


def old_runs(conn: apsw.Connection, cutoff_iso: str, *, limit: int = -1) -> list[dict[str, Any]]:
    """Finished runs started before the cutoff, oldest first (what retention removes)."""
    return [
        {
            "id": row[0],
            "repo_path": row[1],
            "started_at": row[2],
            "status": row[3],
            "event_count": row[4],
        }
        for row in conn.execute(
            "SELECT id, repo_path, started_at, status, event_count FROM runs"
            " WHERE status != 'running' AND started_at < ? ORDER BY started_at, id LIMIT ?",
            (cutoff_iso, limit),
        )
    ]
