"""Retention: delete runs older than ``history.retention_days``.

At start and then once a day, and on demand (``history.prune``), old
finished runs are deleted with their events and graph, a few at a time, each
batch its own short transaction taken between two ingest batches, so that
ingest and reads are never held up. SQLite reuses the freed pages.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import apsw
import trio

from choo_daemon import store
from choo_daemon.writer import Writer

log = logging.getLogger("choo.daemon")

DAY = 24 * 3600.0
BATCH_RUNS = 20  # runs per transaction: a run may hold many thousands of events


def cutoff(older_than_days: int, now: datetime | None = None) -> str:
    return store.iso_utc((now or datetime.now(UTC)) - timedelta(days=older_than_days))


async def prune(
    writer: Writer, *, older_than_days: int, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Delete (or, with ``dry_run``, only list) the runs retention removes."""
    limit = cutoff(older_than_days)
    if dry_run:
        runs: list[dict[str, Any]] = await writer.run_in_writer(store.old_runs, limit)
        return runs
    removed: list[dict[str, Any]] = []
    while True:
        batch: list[dict[str, Any]] = await writer.run_in_writer(_delete_batch, limit)
        removed += batch
        if len(batch) < BATCH_RUNS:
            return removed


def _delete_batch(conn: apsw.Connection, limit: str) -> list[dict[str, Any]]:
    with conn:
        runs = store.old_runs(conn, limit, limit=BATCH_RUNS)
        deleted = set(store.delete_runs_older_than(conn, limit, limit=BATCH_RUNS))
    return [r for r in runs if r["id"] in deleted]


async def serve_retention(
    writer: Writer,
    retention_days: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prune at start, then every day, for as long as the daemon runs."""
    task_status.started()
    while True:
        try:
            runs = await prune(writer, older_than_days=retention_days)
        except apsw.Error as exc:
            log.warning("retention: pruning failed (%s); trying again tomorrow", exc)
        else:
            events = sum(r["event_count"] for r in runs)
            log.info(
                "retention: pruned %d run(s) (%d events) started over %d days ago",
                len(runs),
                events,
                retention_days,
            )
        await trio.sleep(DAY)
