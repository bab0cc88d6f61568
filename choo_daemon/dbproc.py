"""The database process: the one process that writes the history file.

Ingest has two halves: decoding and checking frames (the daemon's trio
thread) and writing rows into SQLite. In one process the two took turns on
the GIL: SQLite lets go of it for each row it inserts and must get it back
for the next, and while the trio thread is decoding every such wait lasts a
switch interval. So the writing half runs here, in a process with a GIL and
a core of its own, and the daemon's ``Writer`` talks to it through
``DbProcess``.

They speak over a socket pair, one request then its answer, each a pickle
(both ends are this program, and the pair is nobody else's). An answer comes
through the socket after its 4-byte length. A request, a megabyte or two for
a batch, is put in a memory file both processes map, and only its length goes
through the socket: sent through the socket, it went a socket buffer at a
time, each one waiting for the trio thread to come round again.

    ("open", set_aside)   -> Opened                     open and migrate the file (set
                                                         a damaged one aside if asked to)
    ("apply", ops, again) -> Applied | None              one batch, one transaction;
                                                         None: refused behind a failed one
    ("call", fn, args)    -> fn(conn, *args)             maintenance (retention, orphans)
    ("close",)            -> None                        checkpoint, close, exit

An answer is ("ok", value), ("passing", why) for a failure of the disk or
the file that a later try may get past (history.db deleted or replaced under
us is one: see ``dbfile``), ("store", why) for a database that cannot be
opened, or ("failed", why, traceback) for anything else. The
process ends when the daemon says "close" or its end of the pair closes.

The daemon's side of all this is ``choo_daemon.dblink``; this module holds
the process's side, and what both use. It does not import trio, so that the
process starts quickly.
"""

from __future__ import annotations

import pickle
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import apsw

from choo_daemon import store
from choo_daemon.dbfile import DatabaseReplaced, FileId, check_same_file, open_database, set_aside
from choo_daemon.dbwire import ANSWER_HEADER, REQUEST_HEADER, SharedFile
from choo_daemon.rows import add_rows
from choo_daemon.store import EventRow
from protocol import ProtocolError, unpack_body
from protocol.home import private_umask

# Failures of the disk or the file, not of the data: worth retrying.
_PASSING = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.BusyError, apsw.CantOpenError)

INSERT_ROWS = 1_000  # rows per insert, at most a little over
# The change reported when a run's own events retract the daemon's run.stopped.
REOPENED = "run.reopened"
# Set by the daemon (never taken from a client) on a run.resume of a run whose
# orchestrator it is waiting for: the store records where that one stopped.
TAKE_OVER = "_take_over"

# One operation of a batch, for the sender numbered ``sid`` in it: events as
# ("events", [frame body, ...], {run: top seq}, [clean, ...]) or a write
# request as ("request", message). "clean": the daemon found no secret shape
# in that body's events, and they are stored without the scrub. The bodies
# were decoded and checked by the daemon already; turning them into rows
# (JSON, scrubbing what may hold a secret) is this process's work.
Op = tuple[int, tuple[Any, ...]]


@dataclass(frozen=True)
class Opened:
    """The answer to "open": what the history holds, and where a damaged file went."""

    events: int
    runs: int
    set_aside: str | None = None


@dataclass
class Applied:
    """What a committed batch owes its senders, by their number in the batch."""

    acks: dict[int, dict[str, int]] = field(default_factory=dict)
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    fatal: dict[int, tuple[str, str]] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)  # ops not applied (their sender was refused)
    inserted: int = 0
    runs_created: int = 0
    runs_changed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # tracebacks of the ops refused


class Applier:
    """Applies batches on the one write connection, each in one transaction.

    A batch is first applied whole, with its rows inserted a thousand at a
    time. If the store refuses it for a reason of its data (not of the disk),
    it is applied again op by op, each in a savepoint, so that only the
    senders whose ops fail are refused and every other sender's work is kept.
    """

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.known_runs: set[str] = set()
        self.held: set[str] = store.held_runs(conn)  # runs whose last word is the daemon's

    def forget(self) -> None:
        """What this object knows of the file may be stale (a rollback, a maintenance call)."""
        self.known_runs.clear()
        self.held = store.held_runs(self.conn)

    def apply(self, ops: list[Op]) -> Applied:
        try:
            return self._transaction(ops, careful=False)
        except _PASSING:
            raise
        except Exception:
            return self._transaction(ops, careful=True)

    def _transaction(self, ops: list[Op], *, careful: bool) -> Applied:
        conn = self.conn
        out = Applied()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if careful:
                for index, (sid, op) in enumerate(ops):
                    self._apply_alone(index, sid, op, out)
            else:
                self._apply_together(ops, out)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (after SQLITE_FULL, for one).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.forget()  # a rolled-back run.start must not stay "known"
            raise
        return out

    def _apply_together(self, ops: list[Op], out: Applied) -> None:
        conn = self.conn
        # Rows wait here until there are enough to be worth one insert, or a
        # request comes: few statements, and never the whole batch in memory.
        pending: list[EventRow] = []
        for index, (sid, op) in enumerate(ops):
            if sid in out.fatal:
                out.skipped.add(index)
            elif op[0] != "events":
                out.inserted += store.append_events(conn, pending)
                pending.clear()
                out.replies.append((sid, self._request(op[1], out)))
            elif self._check_runs(sid, op[2], out) and (rows := self._rows(sid, op, out)):
                pending += rows
                self._ack(out.acks.setdefault(sid, {}), op[2])
                if len(pending) >= INSERT_ROWS:
                    out.inserted += store.append_events(conn, pending)
                    pending.clear()
            else:
                out.skipped.add(index)
        out.inserted += store.append_events(conn, pending)

    def _apply_alone(self, index: int, sid: int, op: tuple[Any, ...], out: Applied) -> None:
        """One op in a savepoint of its own; a failure refuses its sender only."""
        if sid in out.fatal:
            out.skipped.add(index)
            return
        try:
            with self.conn:  # a savepoint inside the batch's transaction
                if op[0] != "events":
                    out.replies.append((sid, self._request(op[1], out)))
                elif self._check_runs(sid, op[2], out) and (rows := self._rows(sid, op, out)):
                    out.inserted += store.append_events(self.conn, rows)
                    self._ack(out.acks.setdefault(sid, {}), op[2])
                else:
                    out.skipped.add(index)
        except _PASSING:
            raise
        except Exception as exc:
            self.forget()
            out.skipped.add(index)
            out.fatal[sid] = ("internal", f"could not store: {type(exc).__name__}: {exc}")
            out.problems.append(traceback.format_exc())

    def _check_runs(self, sid: int, top: dict[str, int], out: Applied) -> bool:
        for run in top:
            if run in self.held:
                # The run's own events came after the daemon marked it stopped.
                store.retract_held_marker(self.conn, run)
                self.held.discard(run)
                out.runs_changed.append((run, REOPENED))
            if run not in self.known_runs:
                if not store.run_exists(self.conn, run):
                    out.fatal[sid] = (
                        "unknown_run",
                        f'event for run "{run}", which was never started (send run.start first)',
                    )
                    return False
                self.known_runs.add(run)
        return True

    @staticmethod
    def _rows(sid: int, op: tuple[Any, ...], out: Applied) -> list[EventRow]:
        """The rows of an events op; none (and the sender refused) for a payload the
        store cannot hold."""
        rows: list[EventRow] = []
        try:
            for body, clean in zip(op[1], op[3], strict=True):
                add_rows(rows, unpack_body(body), clean=clean)
        except ProtocolError as exc:
            out.fatal[sid] = (exc.code, exc.message)
            return []
        return rows

    @staticmethod
    def _ack(acks: dict[str, int], top: dict[str, int]) -> None:
        for run, seq in top.items():
            if seq > acks.get(run, 0):
                acks[run] = seq

    def _request(self, msg: dict[str, Any], out: Applied) -> dict[str, Any]:
        req, run = msg["req"], msg["run"]
        try:
            with self.conn:  # a savepoint: a refused request leaves the batch intact
                data = self._apply_request(msg, out)
        except store.StoreError as exc:
            code = "bad_field" if isinstance(exc, store.BadParameter) else exc.code
            return {"t": "error", "req": req, "code": code, "message": str(exc)}
        self.known_runs.add(run)
        if run in self.held and msg["t"] in ("run.complete", "run.resume"):
            self.held.discard(run)  # retracted by its end, made final by a resume
        out.runs_changed.append((run, msg["t"]))
        return {"t": "ok", "req": req, "data": data}

    def _apply_request(self, msg: dict[str, Any], out: Applied) -> dict[str, Any]:
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
            out.runs_created += created
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


class _Server:
    """The loop of the database process: one request, one answer."""

    def __init__(self, sock: socket.socket, shared: list[SharedFile], database: Path) -> None:
        self.sock = sock
        self.shared = shared
        self.database = database
        self.conn: apsw.Connection | None = None
        self.applier: Applier | None = None
        self.opened: FileId = (0, 0)  # the file the connection writes to
        # After a batch failed, the batches already sent behind it are refused
        # ("blocked") until it has been tried again and passed: they are sent
        # again, in order, so that none is stored before one sent earlier.
        self.blocked = False

    def serve(self) -> None:
        while (request := self._read()) is not None:
            answer, done = self._answer(request)
            try:
                frame = _frame(answer)
            except Exception as exc:  # a value pickle cannot carry
                frame = _frame(("failed", f"cannot send the answer back: {exc}", ""))
            self.sock.sendall(frame)
            if done:
                return

    def _answer(self, request: tuple[Any, ...]) -> tuple[tuple[Any, ...], bool]:
        op = request[0]
        try:
            if op == "close":
                self._close()
                return ("ok", None), True
            return ("ok", self._handlers[op](self, *request[1:])), False
        except _PASSING as exc:
            return ("passing", f"{type(exc).__name__}: {exc}"), False
        except DatabaseReplaced as exc:
            return ("passing", str(exc)), False
        except store.StoreError as exc:
            return ("store", str(exc)), False
        except Exception as exc:
            return ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()), False

    def _open(self, set_aside_corrupt: bool = False) -> Opened:
        if self.conn is not None:
            counts = store.counts(self.conn)
            return Opened(counts["events"], counts["runs"])
        moved = None
        try:
            self.conn, counts, self.opened = open_database(self.database)
        except store.CorruptDatabase:
            if not set_aside_corrupt:
                raise
            moved = str(set_aside(self.database))
            self.conn, counts, self.opened = open_database(self.database)
        self.applier = Applier(self.conn)
        return Opened(counts["events"], counts["runs"], moved)

    def _apply(self, ops: list[Op], again: bool) -> Applied | None:
        assert self.applier is not None, "apply before open"
        if self.blocked and not again:
            return None  # blocked; the daemon sends it again
        try:
            check_same_file(self.database, self.opened)
            applied = self.applier.apply(ops)
            # After the COMMIT, before the answer: rows committed to a file
            # that is no longer history.db are lost with it, so no ack.
            check_same_file(self.database, self.opened)
        except (*_PASSING, DatabaseReplaced):
            self.blocked = True
            raise
        self.blocked = False
        return applied

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        assert self.applier is not None, "call before open"
        try:
            return fn(self.conn, *args)
        finally:
            self.applier.forget()  # fn may have deleted runs, or stopped one

    def _close(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except apsw.Error as exc:
            print(f"choo: checkpoint at shutdown failed: {exc}", file=sys.stderr)
        self.conn.close()
        self.conn = None

    _handlers: ClassVar[dict[str, Callable[..., Any]]] = {
        "open": _open,
        "apply": _apply,
        "call": _call,
    }

    def _read(self) -> tuple[Any, ...] | None:
        header = self._read_exactly(REQUEST_HEADER.size)
        if header is None:
            return None
        size, slot = REQUEST_HEADER.unpack(header)
        if slot >= 0:
            loaded: tuple[Any, ...] = self.shared[slot].load(size)
            return loaded
        data = self._read_exactly(size)
        if data is None:
            return None
        request: tuple[Any, ...] = pickle.loads(data)
        return request

    def _read_exactly(self, size: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            data = self.sock.recv(min(size - len(chunks), 1 << 20))
            if not data:
                return None  # the daemon is gone
            chunks += data
        return bytes(chunks)


def _frame(answer: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    return ANSWER_HEADER.pack(len(data)) + data


def main(argv: list[str]) -> int:
    # Ctrl-C on a daemon in the foreground reaches the whole process group:
    # the daemon stops in order and then closes us; we must not stop first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    private_umask()  # history.db, -wal and -shm are born 0600, whoever started us
    fd, database = int(argv[0]), Path(argv[-1])
    shared = [SharedFile(int(arg)) for arg in argv[1:-1]]
    with socket.socket(fileno=fd) as sock:
        server = _Server(sock, shared, database)
        try:
            server.serve()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon is gone (killed): what it sent last is committed, then we go
        finally:
            # Without the daemon's "close" there is no checkpoint: a new
            # daemon may be writing already, and must not wait for one.
            if server.conn is not None:
                server.conn.close()
            for f in shared:
                f.close()
    return 0


if __name__ == "__main__":
    # Through the module's own name, so that what we pickle (Applied) is
    # found as choo_daemon.dbproc.Applied on the daemon's side, not __main__'s.
    from choo_daemon import dbproc

    sys.exit(dbproc.main(sys.argv[1:]))
