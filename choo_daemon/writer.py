"""The single writer: the only task that writes the history database.

Sessions hand it ``Inbound`` items through a bounded channel. It takes all
that is ready (up to a cap), applies it in one ``BEGIN IMMEDIATE``
transaction in a worker thread, commits, and only then acks the events and
answers the requests. An ack therefore always means "on disk".

When a commit fails for a reason that can pass (disk full, read-only file,
I/O error, lock), nothing is acked: the batch is kept and retried with a
growing pause, and the bounded channel slows the clients down meanwhile.
"""

from __future__ import annotations

import logging
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import trio

from choo_daemon import store
from choo_daemon.session import EventRow, Events, Inbound, Sender
from protocol import Message

log = logging.getLogger("choo.daemon")

MAX_BATCH_EVENTS = 5_000
RETRY_FIRST, RETRY_MAX = 0.05, 5.0
# Failures of the disk or the file, not of the data: worth retrying.
_PASSING = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.BusyError, apsw.CantOpenError)


@dataclass
class Outcome:
    """What a committed batch owes to the sessions that sent it."""

    acks: dict[Sender, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    replies: list[tuple[Sender, Message]] = field(default_factory=list)
    fatal: dict[Sender, tuple[str, str]] = field(default_factory=dict)
    inserted: int = 0
    runs_created: int = 0
    # For live listeners: every event row applied (duplicates included, in
    # order) and every run whose state changed, as (run_id, request type).
    rows: list[EventRow] = field(default_factory=list)
    runs_changed: list[tuple[str, str]] = field(default_factory=list)


class Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: apsw.Connection | None = None
        self._known_runs: set[str] = set()
        self.events_stored = 0
        self.runs_stored = 0
        self.failing: str | None = None  # why commits fail right now, for status
        # Taken for each ingest batch and each maintenance job: trio's locks
        # are fair, so the two take turns on the one write connection.
        self._turn = trio.Lock()
        self._refused: weakref.WeakSet[Sender] = weakref.WeakSet()
        # Called after each commit, in the trio thread; must not block.
        self.listeners: list[Callable[[Outcome], None]] = []

    async def serve(
        self,
        receive: trio.MemoryReceiveChannel[Inbound],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.conn = await trio.to_thread.run_sync(store.open_write_connection, self.path)
        try:
            totals = await trio.to_thread.run_sync(store.counts, self.conn)
            self.events_stored, self.runs_stored = totals["events"], totals["runs"]
            task_status.started()
            async with receive:
                async for first in receive:
                    batch = _take_ready(first, receive)
                    async with self._turn:
                        outcome = await self._commit(batch)
                    self._answer(batch, outcome)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close)

    async def run_in_writer(self, fn: Callable[[apsw.Connection], Any]) -> Any:
        """Run ``fn(conn)`` on the write connection, between two ingest batches.

        For maintenance (retention): keep each call short, one small
        transaction, so that ingest is never held up for long. ``fn`` must
        not touch runs the writer caches as known (it may delete them: the
        cache is cleared after).
        """
        async with self._turn:
            assert self.conn is not None
            try:
                return await trio.to_thread.run_sync(fn, self.conn)
            finally:
                self._known_runs.clear()

    async def _commit(self, batch: list[Inbound]) -> Outcome:
        pause = RETRY_FIRST
        while True:
            try:
                outcome = await trio.to_thread.run_sync(self._apply, batch)
            except _PASSING as exc:
                if self.failing is None:
                    log.error("cannot write %s: %s; holding acks and retrying", self.path, exc)
                self.failing = str(exc)
                await trio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
                continue
            except Exception as exc:
                # Not the disk: something in this batch the store refuses. Drop
                # the connections that sent it, never the daemon.
                log.exception("a batch could not be written; dropping its senders")
                outcome = Outcome()
                for inbound in batch:
                    outcome.fatal[inbound.session] = ("internal", f"could not store: {exc}")
                return outcome
            if self.failing is not None:
                log.info("writing %s again; ingest resumed", self.path)
                self.failing = None
            return outcome

    def _apply(self, batch: list[Inbound]) -> Outcome:
        conn = self.conn
        assert conn is not None
        out = Outcome()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for inbound in batch:
                session = inbound.session
                if session in self._refused:
                    continue  # already told why; its queued work is dropped quietly
                for item in inbound.items:
                    if session in out.fatal:
                        break
                    if type(item) is Events:
                        self._events(conn, session, item, out)
                    else:
                        out.replies.append((session, self._request(conn, item, out)))  # type: ignore[arg-type]
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (after SQLITE_FULL, for one).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._known_runs.clear()  # a rolled-back run.start must not stay "known"
            raise
        return out

    def _events(self, conn: apsw.Connection, session: Sender, events: Events, out: Outcome) -> None:
        for run in events.top:
            if run not in self._known_runs:
                if not store.run_exists(conn, run):
                    out.fatal[session] = (
                        "unknown_run",
                        f'event for run "{run}", which was never started (send run.start first)',
                    )
                    return
                self._known_runs.add(run)
        out.inserted += store.append_events(conn, events.rows)
        out.rows += events.rows
        acks = out.acks[session]
        for run, seq in events.top.items():
            if seq > acks.get(run, 0):
                acks[run] = seq

    def _request(self, conn: apsw.Connection, msg: Message, out: Outcome) -> Message:
        req, run = msg["req"], msg["run"]
        try:
            with conn:  # a savepoint: a refused request leaves the batch intact
                data = self._apply_request(conn, msg, out)
        except store.StoreError as exc:
            code = "bad_field" if isinstance(exc, store.BadParameter) else exc.code
            return {"t": "error", "req": req, "code": code, "message": str(exc)}
        self._known_runs.add(run)
        out.runs_changed.append((run, msg["t"]))
        return {"t": "ok", "req": req, "data": data}

    def _apply_request(self, conn: apsw.Connection, msg: Message, out: Outcome) -> dict[str, Any]:
        kind, run = msg["t"], msg["run"]
        if kind == "run.start":
            created = store.create_run(
                conn,
                run_id=run,
                repo_path=msg["repo_path"],
                started_at=msg["started_at"],
                parallelism=msg["parallelism"],
                total_units=msg["total_units"],
                tasks_dir=msg.get("tasks_dir"),
                dry_run=bool(msg.get("dry_run", False)),
            )
            out.runs_created += created
            return {"run": run, "created": created}
        if kind == "run.resume":
            seq = store.append_resume_marker(
                conn, run, time=msg["time"], token=msg["token"], reason=msg.get("reason")
            )
            return {"run": run, "last_seq": seq}
        if kind == "run.graph":
            store.store_graph(conn, run, msg["nodes"], msg["edges"], msg["levels"])
            return {}
        store.complete_run(
            conn,
            run,
            status=msg["status"],
            completed_at=msg["completed_at"],
            completed_units=msg["completed_units"],
            failed_units=msg["failed_units"],
            blocked_units=msg["blocked_units"],
            error=msg.get("error"),
        )
        return {}

    def _answer(self, batch: list[Inbound], out: Outcome) -> None:
        self.events_stored += out.inserted
        self.runs_stored += out.runs_created
        for listener in self.listeners:
            try:
                listener(out)
            except Exception:
                log.exception("a commit listener failed; ingest goes on")
        for session, runs in out.acks.items():
            for run, seq in runs.items():
                session.send_nowait({"t": "ack", "run": run, "seq": seq})
        for session, reply in out.replies:
            session.send_nowait(reply)
        for session, (code, message) in out.fatal.items():
            self._refused.add(session)
            session.fail(code, message)
        for inbound in batch:
            inbound.session.done()

    def _close(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except apsw.Error as exc:
            log.warning("checkpoint at shutdown failed: %s", exc)
        self.conn.close()
        self.conn = None


def _take_ready(first: Inbound, receive: trio.MemoryReceiveChannel[Inbound]) -> list[Inbound]:
    batch = [first]
    count = first.size
    while count < MAX_BATCH_EVENTS:
        try:
            item = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        batch.append(item)
        count += item.size
    return batch
