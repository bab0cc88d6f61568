"""The OTLP outbox: runs that ended and are still to be sent to the backend.

A row is written by ``enqueue_export`` in the transaction that ends the run
(its ``run.complete``, or the daemon's own ``run.stopped``), and only when
continuous export is configured (``export.otlp.endpoint``): with export off
nothing is written, so the table cannot grow. A run that ends again (it
was resumed) bumps its row's ``generation``; the daemon's sender
(``choo_daemon.outbox``) deletes a row once the run is sent, and only the
generation it sent, so that an end which came while it was sending is sent
too. Rows stay across restarts until they are sent, or their run is pruned.

``enqueue_export`` runs inside the caller's transaction, as the other
writes do; ``export_sent`` and ``export_failed`` are the sender's, called
through ``Writer.run_in_writer``, each its own short transaction. The
reads (``outbox_state``, ``export_snapshot``) run on a read connection.
"""

from __future__ import annotations

from typing import Any, TypedDict

import apsw

from choo_daemon.store.reads import _EVENT_COLUMNS, _event, get_run
from choo_daemon.store.records import Event, RunDetail
from choo_daemon.store.writes import _require_transaction


class OutboxRow(TypedDict):
    run_id: str
    generation: int
    attempts: int


class OutboxState(TypedDict):
    pending: int  # runs waiting to be sent
    next: OutboxRow | None  # the one to send next (the longest waiting to be tried)
    last_error: str | None  # the latest failure of a row still waiting
    last_try_at: str | None  # when that failure was


def enqueue_export(conn: apsw.Connection, run_id: str, now: str) -> None:
    """Put the run in the outbox (again: its generation goes up), due now."""
    _require_transaction(conn)
    conn.execute(
        "INSERT INTO otlp_outbox(run_id, enqueued_at, next_try_at) VALUES (?1, ?2, ?2)"
        " ON CONFLICT(run_id) DO UPDATE SET enqueued_at = ?2, next_try_at = ?2,"
        " generation = generation + 1",
        (run_id, now),
    )


def export_sent(conn: apsw.Connection, run_id: str, generation: int) -> bool:
    """The run's ``generation`` is sent (or its run is gone): delete the row,
    unless the run ended again meanwhile. True if it was deleted."""
    with conn:
        conn.execute(
            "DELETE FROM otlp_outbox WHERE run_id = ? AND generation = ?", (run_id, generation)
        )
        deleted = conn.changes() > 0
    return deleted


def export_failed(
    conn: apsw.Connection, run_id: str, error: str, now: str, next_try_at: str
) -> None:
    """Record a failed send of the run: one more attempt, why, and when to try again."""
    with conn:
        conn.execute(
            "UPDATE otlp_outbox SET attempts = attempts + 1, last_error = ?, last_try_at = ?,"
            " next_try_at = ? WHERE run_id = ?",
            (error, now, next_try_at, run_id),
        )


def outbox_state(conn: apsw.Connection) -> OutboxState:
    """How many runs wait, which to send next, and the latest failure."""
    with conn:
        (pending,) = conn.execute("SELECT count(*) FROM otlp_outbox").fetchone() or (0,)
        first = conn.execute(
            "SELECT run_id, generation, attempts FROM otlp_outbox"
            " ORDER BY next_try_at, run_id LIMIT 1"
        ).fetchone()
        failed = conn.execute(
            "SELECT last_error, last_try_at FROM otlp_outbox WHERE last_error IS NOT NULL"
            " ORDER BY last_try_at DESC LIMIT 1"
        ).fetchone()
    row: OutboxRow | None = None
    if first is not None:
        row = {"run_id": first[0], "generation": first[1], "attempts": first[2]}
    return {
        "pending": int(pending),
        "next": row,
        "last_error": failed[0] if failed else None,
        "last_try_at": failed[1] if failed else None,
    }


def export_snapshot(conn: apsw.Connection, run_id: str) -> tuple[RunDetail, list[Event]] | None:
    """The run (as ``run_detail`` serves it) and all its events in seq order, as
    the API serves them, read in one transaction; None if the run is gone."""
    rows: list[Any] = []
    with conn:
        run = get_run(conn, run_id)
        if run is not None:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events INDEXED BY events_run_seq"
                " WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
    return None if run is None else (run, [_event(row) for row in rows])
