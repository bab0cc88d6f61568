"""Retention: a daemon deletes the runs older than its retention at start, in
batches, keeps running runs, logs what it did, and the freed pages are reused."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import pytest
import trio

from choo_daemon import retention, store
from choo_daemon.daemon import Daemon, DaemonOptions
from protocol.home import Home

PAYLOAD = '{"output_tail":"' + "x" * 400 + '"}'


def days_ago(days: float) -> str:
    return store.iso_utc(datetime.now(UTC) - timedelta(days=days))


def write_runs(
    path: Path,
    prefix: str,
    *,
    count: int,
    events: int,
    started_at: str,
    status: str = "completed",
) -> list[str]:
    """``count`` runs of ``events`` events each, written straight into the store."""
    conn = store.open_write_connection(path)
    ids = [f"{prefix}_{i:03d}" for i in range(count)]
    try:
        for run_id in ids:
            with conn:
                store.create_run(
                    conn,
                    run_id=run_id,
                    repo_path="/repo",
                    started_at=started_at,
                    parallelism=1,
                    total_units=1,
                )
                store.append_events(
                    conn,
                    [
                        (run_id, seq, started_at, "task.claude.done", "u", 1, None, PAYLOAD, None)
                        for seq in range(1, events + 1)
                    ],
                )
                if status != "running":
                    store.complete_run(
                        conn,
                        run_id,
                        status=status,
                        completed_at=started_at,
                        completed_units=1,
                        failed_units=0,
                        blocked_units=0,
                    )
    finally:
        conn.close()
    return ids


def run_ids(path: Path) -> set[str]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM runs")}
    finally:
        conn.close()


def pages(path: Path) -> tuple[int, int]:
    """(page_count, freelist_count) of the database."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.pragma("page_count"), conn.pragma("freelist_count")
    finally:
        conn.close()


def pruned_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention:")]


@asynccontextmanager
async def running_daemon(home: Home, retention_days: int | None = 90) -> AsyncIterator[Daemon]:
    """A daemon in this trio loop, stopped (and its database checkpointed) on exit."""
    home.root.mkdir(mode=0o700, exist_ok=True)
    async with trio.open_nursery() as nursery:
        daemon = Daemon(DaemonOptions(home=home, port=0, retention_days=retention_days))
        await nursery.start(daemon.serve)
        try:
            yield daemon
        finally:
            daemon.request_shutdown()


async def wait_for_prune_log(caplog: pytest.LogCaptureFixture) -> str:
    with trio.fail_after(10):
        while not pruned_logs(caplog):
            await trio.sleep(0.01)
    (line,) = pruned_logs(caplog)
    return line


async def test_a_daemon_prunes_old_runs_at_start_and_logs_how_many(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="choo.daemon")
    # More old runs than one batch holds, so that several batches are needed.
    old = write_runs(
        home.database, "old", count=retention.BATCH_RUNS + 5, events=3, started_at=days_ago(91)
    )
    recent = write_runs(home.database, "new", count=3, events=3, started_at=days_ago(89))
    async with running_daemon(home, retention_days=90):
        line = await wait_for_prune_log(caplog)
    assert line == (
        f"retention: pruned {len(old)} run(s) ({3 * len(old)} events) started over 90 days ago"
    )
    assert run_ids(home.database) == set(recent)


async def test_running_runs_are_never_pruned(home: Home, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="choo.daemon")
    running = write_runs(
        home.database, "busy", count=2, events=2, started_at=days_ago(400), status="running"
    )
    stopped = write_runs(
        home.database, "done", count=2, events=2, started_at=days_ago(400), status="stopped"
    )
    async with running_daemon(home, retention_days=30):
        line = await wait_for_prune_log(caplog)
    assert line.startswith("retention: pruned 2 run(s)")
    assert run_ids(home.database) == set(running)
    assert not set(stopped) & run_ids(home.database)


async def test_no_retention_keeps_every_run(home: Home, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="choo.daemon")
    old = write_runs(home.database, "old", count=2, events=2, started_at=days_ago(5000))
    async with running_daemon(home, retention_days=None) as daemon:
        await daemon.prune(older_than_days=10_000, dry_run=False)  # something to wait for
    assert pruned_logs(caplog) == []
    assert run_ids(home.database) == set(old)


async def test_pages_freed_by_pruning_are_reused(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="choo.daemon")
    write_runs(home.database, "old", count=30, events=200, started_at=days_ago(100))
    full, free = pages(home.database)
    assert free == 0

    async with running_daemon(home, retention_days=90):
        await wait_for_prune_log(caplog)
    assert run_ids(home.database) == set()
    after_prune, free = pages(home.database)
    # The file keeps its size (a few pages more: the daemon's own bookkeeping,
    # sqlite_stat1), with the pruned runs' pages on the free list.
    assert full <= after_prune <= full * 1.02
    assert free > full * 0.9, "the pruned runs' pages are free for reuse"

    # The same amount of data again: it goes into the freed pages.
    write_runs(home.database, "new", count=30, events=200, started_at=days_ago(1))
    again, free = pages(home.database)
    assert again <= full * 1.02, f"the file grew from {full} to {again} pages"
    assert free < full * 0.1
