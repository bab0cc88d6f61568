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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

from choo_daemon.dblink import DbProcess, DbProcessError, Passing, Pending
from choo_daemon.dbmsg import Apply, Call, EventsOp, Op, Open, Outcome, RequestOp
from choo_daemon.rows import EventRow
from choo_daemon.store import StoreError
from choo_daemon.work import Events, Inbound, Sender, Work
from protocol.backoff import delays

log = logging.getLogger("choo.daemon")

MAX_BATCH_EVENTS = 3_000
RETRY_FIRST, RETRY_MAX = 0.05, 5.0

R = TypeVar("R")


@dataclass(eq=False)
class Committed:
    """A committed batch as the writer's listeners see it (the live hub, orphans)."""

    outcome: Outcome
    events: list[Events]  # the events it applied, duplicates included, in order
    _rows: list[EventRow] | None = None

    @property
    def runs_changed(self) -> list[tuple[str, str]]:
        """Every run whose state changed, as (run_id, request type)."""
        return self.outcome.runs_changed

    @property
    def rows(self) -> list[EventRow]:
        """Every event row applied, duplicates included, in order (made on first use)."""
        if self._rows is None:
            self._rows = [row for events in self.events for row in events.rows()]
        return self._rows


class Writer:
    def __init__(
        self,
        path: Path,
        db: DbProcess | None = None,
        *,
        set_aside_corrupt: bool = False,
        outbox: bool = False,
    ) -> None:
        self.path = path
        self.outbox = outbox  # a run that ends goes in the OTLP outbox (continuous export)
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
        self.listeners: list[Callable[[Committed], None]] = []

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
                    opened = await db.request(Open(self.set_aside_corrupt, self.outbox))
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
                number = 0
                async for first in receive:
                    flight = self._prepare(number, _take_ready(first, receive))
                    await window.acquire()
                    flight.pending = await db.submit(flight.request, slot=number % DbProcess.SLOTS)
                    number += 1
                    await to_collect.send(flight)

    def stop_retrying(self) -> None:
        """Shutdown: a batch that cannot be written gets one more try, then is
        given up without an ack (so the daemon can stop; nothing acked is lost)."""
        self._stopping.set()

    async def run_in_writer(self, fn: Callable[..., R], *args: Any) -> R:
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
        return await self._db.request(Call(fn, args))

    def _prepare(self, number: int, batch: list[Inbound]) -> _Flight:
        senders: dict[Sender, int] = {}
        ops: list[Op] = []
        items: list[Work] = []
        for inbound in batch:
            if inbound.session in self._refused:
                continue  # already told why; its queued work is dropped quietly
            sid = senders.setdefault(inbound.session, len(senders))
            for item in inbound.items:
                if isinstance(item, Events):
                    ops.append(EventsOp(sid, item.bodies, item.top, item.clean))
                else:
                    ops.append(RequestOp(sid, item))
                items.append(item)
        return _Flight(batch, list(senders), Apply(number, ops), items)

    async def _collect(
        self,
        db: DbProcess,
        collect: trio.MemoryReceiveChannel[_Flight],
        window: trio.Semaphore,
    ) -> None:
        """Take the answers in order, ack and reply; send again a batch not applied."""
        async with collect:
            async for flight in collect:
                self._answer(flight, await self._outcome_of(db, flight))
                window.release()

    async def _outcome_of(self, db: DbProcess, flight: _Flight) -> Outcome:
        """The batch's outcome, once it is applied (or given up).

        A batch the database process did not apply (it failed, or was not
        its turn: see ``dbproc._Server.apply``) is sent again as it is, after
        a pause while commits fail; batches come here in the order they were
        sent, so they are sent again in that order.
        """
        assert flight.pending is not None
        pending, pauses, tries = flight.pending, delays(RETRY_FIRST, RETRY_MAX), 1
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
                why = ("internal", f"could not store: {exc.why}")
                return flight.nothing_applied(dict.fromkeys(range(len(flight.senders)), why))
            if applied is not None:
                if self.failing is not None:
                    log.info("writing %s again; ingest resumed", self.path)
                    self.failing = None
                return applied
            if self.failing is not None:
                if self._stopping.is_set() and tries > 1:
                    log.warning(
                        "stopping with a batch of %d item(s) not written (%s); not acked, "
                        "so its senders keep it for the next daemon",
                        len(flight.items),
                        self.failing,
                    )
                    return flight.nothing_applied({})
                with trio.move_on_after(next(pauses)):
                    await self._stopping.wait()  # then one last try
            tries += 1
            pending = await db.submit(flight.request)

    def _answer(self, flight: _Flight, out: Outcome) -> None:
        """Ack, reply and refuse, by sender; then tell the listeners."""
        senders = flight.senders
        for problem in out.problems:
            log.error(
                "the store refused a sender's work; the rest of its batch is kept\n%s", problem
            )
        self.events_stored += out.inserted
        self.runs_stored += out.runs_created
        if self.listeners:
            committed = Committed(out, flight.events_applied(out.skipped))
            for listener in self.listeners:
                try:
                    listener(committed)
                except Exception:
                    log.exception("a commit listener failed; ingest goes on")
        for sid, runs in out.acks.items():
            session = senders[sid]
            for run, seq in runs.items():
                session.send_nowait({"t": "ack", "run": run, "seq": seq})
        for sid, reply in out.replies:
            senders[sid].send_nowait(reply)
        for sid, (code, message) in out.fatal.items():
            self._refused.add(senders[sid])
            senders[sid].fail(code, message)
        for inbound in flight.batch:
            inbound.session.done()


@dataclass(eq=False)
class _Flight:
    """A batch on its way to the database process."""

    batch: list[Inbound]
    senders: list[Sender]  # by their number in the batch
    request: Apply
    items: list[Work]  # what each op was made from
    pending: Pending[Outcome | None] | None = None

    def nothing_applied(self, fatal: dict[int, tuple[str, str]]) -> Outcome:
        """The outcome of a batch given up: none of its ops applied."""
        return Outcome(fatal=fatal, skipped=set(range(len(self.items))))

    def events_applied(self, skipped: set[int]) -> list[Events]:
        return [
            item
            for index, item in enumerate(self.items)
            if type(item) is Events and index not in skipped
        ]


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
