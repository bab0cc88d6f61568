"""The database process: the one process that writes the history file.

Ingest has two halves: decoding and checking frames (the daemon's trio
thread) and writing rows into SQLite. In one process the two took turns on
the GIL: SQLite lets go of it for each row it inserts and must get it back
for the next, and while the trio thread is decoding every such wait lasts a
switch interval. So the writing half runs here, in a process with a GIL and
a core of its own, and the daemon's ``Writer`` talks to it through
``DbProcess``.

They speak over a socket pair, one request then its answer, each a pickle
of the dataclasses in ``choo_daemon.dbmsg`` (both ends are this program,
and the pair is nobody else's). An answer comes through the socket after its
4-byte length. A request, a megabyte or two for a batch, is put in a memory
file both processes map, and only its length goes through the socket: sent
through the socket, it went a socket buffer at a time, each one waiting for
the trio thread to come round again. The process ends when the daemon sends
``Close`` or its end of the pair closes.

The daemon's side of all this is ``choo_daemon.dblink``; this module holds
the process's side. It does not import trio, so that the process starts
quickly.
"""

from __future__ import annotations

import logging
import pickle
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import apsw

from choo_daemon import store
from choo_daemon.dbfile import DatabaseReplaced, FileId, check_same_file, open_database, set_aside
from choo_daemon.dbmsg import (
    REOPENED,
    TAKE_OVER,
    Answer,
    Apply,
    Call,
    Close,
    EventsOp,
    Failed,
    Ok,
    Op,
    Open,
    Opened,
    Outcome,
    Request,
    RequestOp,
)
from choo_daemon.dbwire import ANSWER_HEADER, REQUEST_HEADER, SharedFile
from choo_daemon.logformat import OneLineFormatter
from choo_daemon.rows import add_rows
from choo_daemon.store import EventRow
from choo_daemon.store.outbox import enqueue_export
from protocol import ProtocolError, unpack_body
from protocol.home import private_umask
from protocol.messages import RUN_END_FIELDS

# Failures of the disk or the file, not of the data: worth retrying.
_PASSING = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.BusyError, apsw.CantOpenError)

INSERT_ROWS = 1_000  # rows per insert, at most a little over
FOLD_CHUNK = 500  # queued task events added up between two looks for a request
INDEX_CHUNK = 1_000  # events indexed for search between two looks for a request
IDLE_BEFORE_FOLD = 0.05  # seconds without a request before adding up starts


class Applier:
    """Applies batches on the one write connection, each in one transaction.

    A batch is first applied whole, with its rows inserted a thousand at a
    time. If the store refuses it for a reason of its data (not of the disk),
    it is applied again op by op, each in a savepoint, so that only the
    senders whose ops fail are refused and every other sender's work is kept.
    """

    def __init__(self, conn: apsw.Connection, *, outbox: bool = False) -> None:
        self.conn = conn
        self.outbox = outbox  # a run that ends goes in the OTLP outbox (store/outbox.py)
        self.known_runs: set[str] = set()
        self.held: set[str] = store.held_runs(conn)  # runs whose last word is the daemon's
        self._inserted = 0  # counts of the transaction under way
        self._created = 0

    def forget(self) -> None:
        """What this object knows of the file may be stale (a rollback, a maintenance call)."""
        self.known_runs.clear()
        self.held = store.held_runs(self.conn)

    def apply(self, ops: list[Op]) -> Outcome:
        try:
            return self._transaction(ops, careful=False)
        except _PASSING:
            raise
        except Exception:
            return self._transaction(ops, careful=True)

    def _transaction(self, ops: list[Op], *, careful: bool) -> Outcome:
        conn = self.conn
        out = Outcome()
        self._inserted = self._created = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            if careful:
                for index, op in enumerate(ops):
                    self._apply_alone(index, op, out)
            else:
                self._apply_together(ops, out)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (after SQLITE_FULL, for one).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.forget()  # a rolled-back run.start must not stay "known"
            raise
        return replace(out, inserted=self._inserted, runs_created=self._created)

    def _insert(self, rows: list[EventRow]) -> None:
        self._inserted += store.append_events(self.conn, rows)

    def _apply_together(self, ops: list[Op], out: Outcome) -> None:
        # Rows wait here until there are enough to be worth one insert, or a
        # request comes: few statements, and never the whole batch in memory.
        pending: list[EventRow] = []
        for index, op in enumerate(ops):
            if op.sender in out.fatal:
                out.skipped.add(index)
            elif isinstance(op, RequestOp):
                self._insert(pending)
                pending.clear()
                self._reply(op, out)
            elif self._check_runs(op, out) and (rows := self._rows(op, out)):
                pending += rows
                self._ack(out, op)
                if len(pending) >= INSERT_ROWS:
                    self._insert(pending)
                    pending.clear()
            else:
                out.skipped.add(index)
        self._insert(pending)

    def _apply_alone(self, index: int, op: Op, out: Outcome) -> None:
        """One op in a savepoint of its own; a failure refuses its sender only."""
        if op.sender in out.fatal:
            out.skipped.add(index)
            return
        try:
            with self.conn:  # a savepoint inside the batch's transaction
                if isinstance(op, RequestOp):
                    self._reply(op, out)
                elif self._check_runs(op, out) and (rows := self._rows(op, out)):
                    self._insert(rows)
                    self._ack(out, op)
                else:
                    out.skipped.add(index)
        except _PASSING:
            raise
        except Exception as exc:
            self.forget()
            out.skipped.add(index)
            out.fatal[op.sender] = ("internal", f"could not store: {type(exc).__name__}: {exc}")
            out.problems.append(traceback.format_exc())

    def _check_runs(self, op: EventsOp, out: Outcome) -> bool:
        for run in op.top:
            if run in self.held:
                # The run's own events came after the daemon marked it stopped.
                store.retract_held_marker(self.conn, run)
                self.held.discard(run)
                out.runs_changed.append((run, REOPENED))
            if run not in self.known_runs:
                if not store.run_exists(self.conn, run):
                    out.fatal[op.sender] = (
                        "unknown_run",
                        f'event for run "{run}", which was never started (send run.start first)',
                    )
                    return False
                self.known_runs.add(run)
        return True

    @staticmethod
    def _rows(op: EventsOp, out: Outcome) -> list[EventRow]:
        """The rows of an events op; none (and the sender refused) for a payload the
        store cannot hold."""
        rows: list[EventRow] = []
        try:
            for body, clean in zip(op.bodies, op.clean, strict=True):
                add_rows(rows, unpack_body(body), clean=clean)
        except ProtocolError as exc:
            out.fatal[op.sender] = (exc.code, exc.message)
            return []
        return rows

    @staticmethod
    def _ack(out: Outcome, op: EventsOp) -> None:
        acks = out.acks.setdefault(op.sender, {})
        for run, seq in op.top.items():
            if seq > acks.get(run, 0):
                acks[run] = seq

    def _reply(self, op: RequestOp, out: Outcome) -> None:
        """Apply a request and queue its reply; a stale resume (not_owner) is fatal:
        the events behind it in its sender's replay are not the run's any more."""
        reply = self._request(op.message, out)
        if reply.get("code") == store.NotOwner.code:
            out.fatal[op.sender] = (reply["code"], reply["message"])
        else:
            out.replies.append((op.sender, reply))

    def _request(self, msg: dict[str, Any], out: Outcome) -> dict[str, Any]:
        req, run = msg["req"], msg["run"]
        try:
            with self.conn:  # a savepoint: a refused request leaves the batch intact
                data = self._apply_request(msg)
        except store.StoreError as exc:
            code = "bad_field" if isinstance(exc, store.BadParameter) else exc.code
            return {"t": "error", "req": req, "code": code, "message": str(exc)}
        self.known_runs.add(run)
        if run in self.held and msg["t"] in ("run.complete", "run.resume"):
            self.held.discard(run)  # retracted by its end, made final by a resume
        out.runs_changed.append((run, msg["t"]))
        return {"t": "ok", "req": req, "data": data}

    def _apply_request(self, msg: dict[str, Any]) -> dict[str, Any]:
        kind, run, conn = msg["t"], msg["run"], self.conn
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
                token=msg.get("token"),
            )
            self._created += created
            return {"run": run, "created": created}
        if kind == "run.resume":
            seq = store.append_resume_marker(
                conn,
                run,
                time=msg["time"],
                token=msg["token"],
                reason=msg.get("reason"),
                take_over=bool(msg.get(TAKE_OVER)),
            )
            return {"run": run, "last_seq": seq}
        if kind == "run.graph":
            store.store_graph(conn, run, msg["nodes"], msg["edges"], msg["levels"])
            return {}
        end: dict[str, Any] = {name: msg.get(name) for name in RUN_END_FIELDS}
        store.complete_run(conn, run, **end)
        if self.outbox:  # in the transaction that ends it: never an end without its send
            enqueue_export(conn, run, store.utc_now())
        return {}


class _Server:
    """The loop of the database process: one request, one answer."""

    def __init__(self, sock: socket.socket, shared: list[SharedFile], database: Path) -> None:
        self.sock = sock
        self.shared = shared
        self.database = database
        self.conn: apsw.Connection | None = None
        self.applier: Applier | None = None
        self.opened: FileId = (0, 0)  # the file the connection writes to
        self.turn = 0  # the number of the batch to commit next
        self.folding = True  # the roll-up queue may hold events (rollups.py)
        self.indexing = True  # events may wait to be indexed for search (search.py)
        self.catch_up = store.CatchUp()

    def serve(self) -> None:
        while True:
            self._work_while_idle()
            request = self._read()
            if request is None:
                return
            answer = self._answer(request)
            try:
                frame = _frame(answer)
            except Exception as exc:  # a value pickle cannot carry
                frame = _frame(Failed("failed", f"cannot send the answer back: {exc}"))
            self.sock.sendall(frame)
            if type(request) is Close:
                return

    def _work_while_idle(self) -> None:
        """Add up queued task events (roll-ups), then index new events for
        search, while no request waits.

        A chunk at a time, looking for a request between chunks, so that
        ingest never waits behind this work. A failure (a full disk, say)
        leaves it for the next idle moment; it is never the daemon's end.
        """
        if self.conn is None:
            return
        # Only once the daemon has been quiet a moment: under a stream of
        # batches this waits (a running run's roll-ups, and search, lag its
        # events then), so that it never takes the CPU ingest needs.
        wait = IDLE_BEFORE_FOLD
        while (self.folding or self.indexing) and not select.select([self.sock], [], [], wait)[0]:
            wait = 0
            if self.folding:
                self.folding = self._step(store.fold_pending, FOLD_CHUNK)
            else:
                self.indexing = self._step(self.catch_up.step, INDEX_CHUNK)

    def _step(self, work: Callable[[apsw.Connection, int], int], chunk: int) -> bool:
        """One chunk of idle work; False once there is none left (or it failed)."""
        assert self.conn is not None
        try:
            return bool(work(self.conn, chunk))
        except Exception:
            traceback.print_exc()  # to the daemon's log
            return False

    def _answer(self, request: Request[Any]) -> Answer:
        try:
            return Ok(self._handle(request))
        except _PASSING as exc:
            return Failed("passing", f"{type(exc).__name__}: {exc}")
        except DatabaseReplaced as exc:
            return Failed("passing", str(exc))
        except store.StoreError as exc:
            return Failed("store", str(exc))
        except Exception as exc:
            return Failed("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def _handle(self, request: Request[Any]) -> Any:
        if type(request) is Apply:
            return self.apply(request)
        if type(request) is Call:
            return self.call(request)
        if type(request) is Open:
            return self.open(request)
        if type(request) is Close:
            return self.close()
        raise TypeError(f"not a request: {request!r}")

    def open(self, request: Open) -> Opened:
        if self.conn is not None:
            counts = store.counts(self.conn)
            return Opened(counts["events"], counts["runs"])
        moved = None
        try:
            self.conn, counts, self.opened = open_database(self.database)
        except store.CorruptDatabase:
            if not request.set_aside:
                raise
            moved = str(set_aside(self.database))
            self.conn, counts, self.opened = open_database(self.database)
        # What is left to add up: at the first quiet moment.
        self.applier = Applier(self.conn, outbox=request.outbox)
        return Opened(counts["events"], counts["runs"], moved)

    def apply(self, request: Apply) -> Outcome | None:
        """Commit a batch in its turn: batches are stored in the order they were sent.

        Batches are numbered as the daemon sends them, and committed in that
        order, each once. A batch that fails for a reason that may pass (disk
        full, read-only or replaced file) stays the one whose turn it is:
        every batch numbered after it, sent already or sent later, is
        answered None and not applied, until that one has been sent again
        and committed. The daemon sends again, as they were, in the order it
        sent them, the batches that failed or were answered None; so none is
        stored before one sent earlier. A batch the store refuses for good
        (its senders are dropped) takes its turn like one committed.
        """
        assert self.applier is not None, "apply before open"
        if request.number != self.turn:
            return None  # behind one that failed: the daemon sends it again
        try:
            check_same_file(self.database, self.opened)
            applied = self.applier.apply(request.ops)
            # After the COMMIT, before the answer: rows committed to a file
            # that is no longer history.db are lost with it, so no ack.
            check_same_file(self.database, self.opened)
        except (*_PASSING, DatabaseReplaced):
            raise  # still its turn
        except Exception:
            self.turn += 1
            raise
        self.turn += 1
        self.folding = self.indexing = True
        return applied

    def call(self, request: Call[Any]) -> Any:
        assert self.applier is not None, "call before open"
        try:
            return request.fn(self.conn, *request.args)
        finally:
            self.indexing = True  # fn may have deleted events: indexed_id may be lower
            self.applier.forget()  # fn may have deleted runs, or stopped one

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except apsw.Error as exc:
            print(f"choo: checkpoint at shutdown failed: {exc}", file=sys.stderr)
        self.conn.close()
        self.conn = None

    def _read(self) -> Request[Any] | None:
        header = self._read_exactly(REQUEST_HEADER.size)
        if header is None:
            return None
        size, slot = REQUEST_HEADER.unpack(header)
        if slot >= 0:
            loaded: Request[Any] = self.shared[slot].load(size)
            return loaded
        data = self._read_exactly(size)
        if data is None:
            return None
        request: Request[Any] = pickle.loads(data)
        return request

    def _read_exactly(self, size: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            data = self.sock.recv(min(size - len(chunks), 1 << 20))
            if not data:
                return None  # the daemon is gone
            chunks += data
        return bytes(chunks)


def _frame(answer: Answer) -> bytes:
    data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    return ANSWER_HEADER.pack(len(data)) + data


def _log_to_stderr() -> None:
    """What this process logs (a migration's progress) goes to its stderr, the
    daemon's, which is the daemon's log when it runs detached."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    root = logging.getLogger("choo")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(argv: list[str]) -> int:
    # Ctrl-C on a daemon in the foreground reaches the whole process group:
    # the daemon stops in order and then closes us; we must not stop first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    private_umask()  # history.db, -wal and -shm are born 0600, whoever started us
    _log_to_stderr()
    fd, database = int(argv[0]), Path(argv[-1])
    shared = [SharedFile(int(arg)) for arg in argv[1:-1]]
    with socket.socket(fileno=fd) as sock:
        server = _Server(sock, shared, database)
        try:
            server.serve()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon is gone (killed): what it sent last is committed, then we go
        finally:
            # Without the daemon's Close there is no checkpoint: a new
            # daemon may be writing already, and must not wait for one.
            if server.conn is not None:
                server.conn.close()
            for f in shared:
                f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
