"""The single writer: the only task that writes the history database.

Sessions hand it ``Inbound`` items through a bounded channel. It takes all
that is ready (up to a cap) and has the database process (``dbproc``) apply
it in one ``BEGIN IMMEDIATE`` transaction and commit; only then does it ack
the events and answer the requests. An ack therefore always means "on disk".

When a commit fails for a reason that can pass (disk full, read-only file,
I/O error, lock, history.db deleted or replaced), nothing is acked: the
batch is kept and retried with a growing pause, and the bounded channel
slows the clients down meanwhile. At shutdown such a batch gets one last
try, then is given up unacked: its senders still hold its events and send
them to the next daemon.
"""

from __future__ import annotations

import logging
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from choo_daemon.dblink import DbProcess, DbProcessError, Passing, Pending
from choo_daemon.dbproc import Op
from choo_daemon.rows import EventRow
from choo_daemon.session import Events, Inbound, Sender, Work
from choo_daemon.store import StoreError
from protocol import Message
from protocol.backoff import delays

log = logging.getLogger("choo.daemon")

MAX_BATCH_EVENTS = 3_000
RETRY_FIRST, RETRY_MAX = 0.05, 5.0


@dataclass
class Outcome:
    """What a committed batch owes to the sessions that sent it."""

    acks: dict[Sender, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    replies: list[tuple[Sender, Message]] = field(default_factory=list)
    fatal: dict[Sender, tuple[str, str]] = field(default_factory=dict)
    inserted: int = 0
    runs_created: int = 0
    # For live listeners: the events applied and every run whose state
    # changed, as (run_id, request type).
    events: list[Events] = field(default_factory=list)
    runs_changed: list[tuple[str, str]] = field(default_factory=list)
    _rows: list[EventRow] | None = None

    @property
    def rows(self) -> list[EventRow]:
        """Every event row applied, duplicates included, in order (made on first use)."""
        if self._rows is None:
            self._rows = [row for events in self.events for row in events.rows()]
        return self._rows


class Writer:
    def __init__(
        self, path: Path, db: DbProcess | None = None, *, set_aside_corrupt: bool = False
    ) -> None:
        self.path = path
        self._db = db  # started early by __main__, or by serve()
        self.set_aside_corrupt = set_aside_corrupt  # a damaged file is moved, not refused
        self.set_aside: str | None = None  # where it went
        self.events_stored = 0
        self.runs_stored = 0
        self.failing: str | None = None  # why commits fail right now, for status
        self.ready = trio.Event()  # the database is open, the counts known
        self._stopping = trio.Event()  # shutdown: a failing batch is not retried forever
        self._refused: weakref.WeakSet[Sender] = weakref.WeakSet()
        # Called after each commit, in the trio thread; must not block.
        self.listeners: list[Callable[[Outcome], None]] = []

    async def serve(
        self,
        receive: trio.MemoryReceiveChannel[Inbound],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        db = self._db = self._db or DbProcess.spawn(self.path)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.serve_answers)
            try:
                try:
                    opened = await db.request("open", self.set_aside_corrupt)
                except DbProcessError as exc:
                    raise StoreError(exc.why) from None
                self.events_stored, self.runs_stored = opened.events, opened.runs
                if opened.set_aside is not None:
                    self.set_aside = opened.set_aside
                    log.warning(
                        "%s was not a valid SQLite database: moved to %s (with its -wal "
                        "and -shm, if any); a new history starts",
                        self.path,
                        opened.set_aside,
                    )
                self.ready.set()
                task_status.started()
                await self._pipeline(db, receive)
            finally:
                await db.aclose()

    async def _pipeline(self, db: DbProcess, receive: trio.MemoryReceiveChannel[Inbound]) -> None:
        """Send batches as they are ready, up to ``DbProcess.SLOTS`` ahead of the answers."""
        window = trio.Semaphore(DbProcess.SLOTS)
        to_collect, collect = trio.open_memory_channel[_Flight](DbProcess.SLOTS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._collect, db, collect, window)
            async with to_collect, receive:
                slot = 0
                async for first in receive:
                    flight = self._prepare(_take_ready(first, receive))
                    await window.acquire()
                    flight.pending = await db.submit("apply", flight.ops, False, slot=slot)
                    slot = (slot + 1) % DbProcess.SLOTS
                    await to_collect.send(flight)

    def stop_retrying(self) -> None:
        """Shutdown: a batch that cannot be written gets one more try, then is
        given up without an ack (so the daemon can stop; nothing acked is lost)."""
        self._stopping.set()

    async def run_in_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Return ``fn(conn, *args)`` run on the write connection, between two batches.

        For maintenance (retention, orphans): keep each call short, one small
        transaction, so that ingest is never held up for long. Jobs also run
        while a failing batch waits to be tried again (a prune may be what
        frees the disk). It runs in the database process, so ``fn`` must be
        a module-level function and its arguments and result plain data. A
        failure raises DbProcessError.
        """
        await self.ready.wait()
        assert self._db is not None
        return await self._db.request("call", fn, args)

    def _prepare(self, batch: list[Inbound]) -> _Flight:
        flight = _Flight(batch)
        for inbound in batch:
            if inbound.session in self._refused:
                continue  # already told why; its queued work is dropped quietly
            sid = flight.senders.setdefault(inbound.session, len(flight.senders))
            for item in inbound.items:
                if type(item) is Events:
                    flight.ops.append((sid, ("events", item.bodies, item.top, item.clean)))
                else:
                    flight.ops.append((sid, ("request", item)))
                flight.items.append(item)
        return flight

    async def _collect(
        self,
        db: DbProcess,
        collect: trio.MemoryReceiveChannel[_Flight],
        window: trio.Semaphore,
    ) -> None:
        """Take the answers in order, ack and reply; recover a batch that failed.

        Once a batch had to be sent again, the ones behind it were refused
        and must be too, in order, before anything new goes out: so their
        places in the window are kept until a batch passes at once, or none
        is left in flight.
        """
        held = 0
        async with collect:
            while True:
                if not collect.statistics().current_buffer_used:
                    for _ in range(held):  # nothing left in flight behind them
                        window.release()
                    held = 0
                try:
                    flight = await collect.receive()
                except trio.EndOfChannel:
                    return
                outcome, again = await self._outcome_of(db, flight)
                self._answer(flight.batch, outcome)
                if again:
                    held += 1
                else:
                    for _ in range(held + 1):
                        window.release()
                    held = 0

    async def _outcome_of(self, db: DbProcess, flight: _Flight) -> tuple[Outcome, bool]:
        """The batch's outcome, and whether it had to be sent again."""
        assert flight.pending is not None
        pending, pauses, again = flight.pending, delays(RETRY_FIRST, RETRY_MAX), False
        while True:
            try:
                applied = await db.result(pending)
            except Passing as exc:
                if self.failing is None:
                    log.error("cannot write %s: %s; holding acks and retrying", self.path, exc)
                self.failing = exc.why
                applied = None
            except DbProcessError as exc:
                if type(exc) is not DbProcessError:
                    raise  # the process is gone: the daemon cannot go on
                # Not the disk: something in this batch the store refuses. Drop
                # the connections that sent it, never the daemon.
                log.error("a batch could not be written; dropping its senders\n%s", exc.detail)
                outcome = Outcome()
                for sender in flight.senders:
                    outcome.fatal[sender] = ("internal", f"could not store: {exc.why}")
                return outcome, again
            if applied is not None:
                if self.failing is not None:
                    log.info("writing %s again; ingest resumed", self.path)
                    self.failing = None
                return _outcome(applied, flight), again
            # Failed, or refused behind one that failed: send it again, after a pause.
            if self.failing is not None:
                if self._stopping.is_set() and again:
                    log.warning(
                        "stopping with a batch of %d item(s) not written (%s); not acked, "
                        "so its senders keep it for the next daemon",
                        len(flight.items),
                        self.failing,
                    )
                    return Outcome(), again
                with trio.move_on_after(next(pauses)):
                    await self._stopping.wait()  # then one last try
            again = True
            pending = await db.submit("apply", flight.ops, True)

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


@dataclass(eq=False)
class _Flight:
    """A batch on its way to the database process, by sender number."""

    batch: list[Inbound]
    senders: dict[Sender, int] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    items: list[Work] = field(default_factory=list)  # what each op was made from
    pending: Pending | None = None


def _outcome(applied: Any, flight: _Flight) -> Outcome:
    """The database process's answer, by sender again, with the events it applied."""
    senders = list(flight.senders)
    for problem in applied.problems:
        log.error("the store refused a sender's work; the rest of its batch is kept\n%s", problem)
    out = Outcome(inserted=applied.inserted, runs_created=applied.runs_created)
    out.runs_changed = applied.runs_changed
    for sid, runs in applied.acks.items():
        out.acks[senders[sid]] = runs
    out.replies = [(senders[sid], reply) for sid, reply in applied.replies]
    out.fatal = {senders[sid]: why for sid, why in applied.fatal.items()}
    out.events = [
        item
        for index, item in enumerate(flight.items)
        if type(item) is Events and index not in applied.skipped
    ]
    return out


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
