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

    ("open",)             -> {"events": n, "runs": n}   open and migrate the file
    ("apply", ops)        -> Applied                     one batch, one transaction
    ("call", fn, args)    -> fn(conn, *args)             maintenance (retention, orphans)
    ("close",)            -> None                        checkpoint, close, exit

An answer is ("ok", value), ("passing", why) for a failure of the disk or
the file that a later try may get past, ("store", why) for a database that
cannot be opened, or ("failed", why, traceback) for anything else. The
process ends when the daemon says "close" or its end of the pair closes.

    DbProcessError          the database process failed a request
    ├── Passing             ... for a reason that may pass (disk full, read-only file)
    └── DbProcessGone       it is not there any more (it died, or its socket broke)
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import apsw
import trio

from choo_daemon import store
from choo_daemon.session import add_rows
from choo_daemon.store import EventRow
from protocol import ProtocolError, unpack_body

log = logging.getLogger("choo.daemon")

# A request's length and memory file (-1: it follows in the socket); an answer's length.
_HEADER = struct.Struct(">Ii")
_ANSWER = struct.Struct(">I")
# Failures of the disk or the file, not of the data: worth retrying.
_PASSING = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.BusyError, apsw.CantOpenError)

# One operation of a batch, for the sender numbered ``sid`` in it: events as
# ("events", [frame body, ...], {run: top seq}) or a write request as
# ("request", message). The bodies were decoded and checked by the daemon
# already; turning them into rows (JSON, scrubbing) is this process's work.
Op = tuple[int, tuple[Any, ...]]


class DbProcessError(Exception):
    def __init__(self, why: str, detail: str = "") -> None:
        super().__init__(why)
        self.why = why
        self.detail = detail


class Passing(DbProcessError):
    """A failure of the disk or the file: the same request may pass later."""


class DbProcessGone(DbProcessError):
    """The database process has ended (or its socket broke)."""


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


# -- the daemon's side ----------------------------------------------------------


class SharedFile:
    """A memory file that both processes map; the daemon writes, the process reads."""

    INITIAL_SIZE = 4 << 20  # pages are only taken when written

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map: mmap.mmap | None = None

    @classmethod
    def create(cls) -> SharedFile:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("choo-dbproc")
        else:  # no memfd (macOS): a file with no name, much the same
            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
        os.ftruncate(fd, cls.INITIAL_SIZE)
        return cls(fd)

    def write(self, data: bytes) -> None:
        size = os.fstat(self.fd).st_size
        if len(data) > size:
            os.ftruncate(self.fd, max(len(data), 2 * size))
        self._mapped(len(data))[: len(data)] = data

    def read(self, size: int) -> bytes:
        return self._mapped(size)[:size]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        os.close(self.fd)

    def _mapped(self, size: int) -> mmap.mmap:
        if self._map is None or len(self._map) < size:
            if self._map is not None:
                self._map.close()
            self._map = mmap.mmap(self.fd, os.fstat(self.fd).st_size)
        return self._map


class Pending:
    """A request sent; its answer comes in the order requests were sent."""

    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: tuple[Any, ...] = ()

    def resolve(self, answer: tuple[Any, ...]) -> None:
        self.answer = answer
        self.done.set()


class DbProcess:
    """The daemon's handle on the database process (used from the trio thread).

    Requests may be sent before the answers to earlier ones come back: the
    process then starts on the next batch the moment it has committed one.
    ``serve_answers`` must run meanwhile, in the caller's nursery.
    """

    SLOTS = 2  # memory files: batches in flight at once

    def __init__(
        self, proc: subprocess.Popen[bytes], sock: socket.socket, shared: list[SharedFile]
    ) -> None:
        self.proc = proc
        self._sock = sock
        self._shared = shared
        self._stream: trio.SocketStream | None = None
        self._buffer = bytearray()
        self._send_lock = trio.Lock()
        self._waiting: deque[Pending] = deque()
        self._broken: str | None = None
        self._closing = False

    @classmethod
    def spawn(cls, database: Path) -> DbProcess:
        """Start the process; it opens nothing until asked to. Blocking, but quick."""
        ours, theirs = socket.socketpair()
        shared = [SharedFile.create() for _ in range(cls.SLOTS)]
        fds = (theirs.fileno(), *(f.fd for f in shared))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "choo_daemon.dbproc", *map(str, fds), str(database)],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            for f in shared:
                f.close()
            raise
        finally:
            theirs.close()
        return cls(proc, ours, shared)

    async def serve_answers(self) -> None:
        """Read answers and hand each to its request, until the process closes.

        Shielded: cancelled or not, the daemon's last requests (the batches
        in flight, "close") still get their answers; ``aclose`` ends it.
        Raises DbProcessGone if the process ends before it was asked to.
        """
        stream = self._open_stream()
        with trio.CancelScope(shield=True):
            try:
                while True:
                    answer = await self._receive(stream)
                    self._waiting.popleft().resolve(answer)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._lost(None if self._closing else exc)
                if not self._closing:
                    raise DbProcessGone(self._gone_why(exc)) from None

    async def submit(self, *request: Any, slot: int | None = None) -> Pending:
        """Send a request (through memory file ``slot``, or the socket); don't wait."""
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        pending = Pending()
        async with self._send_lock:
            if self._broken is not None:
                raise DbProcessGone(self._broken)
            self._waiting.append(pending)
            with trio.CancelScope(shield=True):  # half a request would be out of step
                try:
                    if slot is None:
                        frame = _HEADER.pack(len(data), -1) + data
                    else:
                        self._shared[slot].write(data)
                        frame = _HEADER.pack(len(data), slot)
                    await self._open_stream().send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._lost(exc)
        return pending

    @staticmethod
    async def result(pending: Pending) -> Any:
        """The value the process answered, or raise DbProcessError."""
        await pending.done.wait()
        answer = pending.answer
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "passing":
            raise Passing(answer[1])
        if answer[0] == "gone":
            raise DbProcessGone(answer[1])
        raise DbProcessError(*answer[1:])

    async def request(self, *request: Any) -> Any:
        """Send one request (through the socket) and return its value."""
        return await self.result(await self.submit(*request))

    def _lost(self, exc: BaseException | None) -> None:
        why = self._gone_why(exc) if exc is not None else "the database process was closed"
        self._broken = why
        while self._waiting:
            self._waiting.popleft().resolve(("gone", why))

    async def aclose(self, timeout: float = 10.0) -> None:
        """Ask the process to checkpoint and exit; kill it if it does not.

        Shielded: the daemon closes it on its way out, cancelled or not.
        """
        with trio.CancelScope(shield=True):
            if self._broken is None and self.proc.poll() is None:
                with trio.move_on_after(timeout):
                    try:
                        self._closing = True
                        await self.request("close")
                    except DbProcessError as exc:
                        log.warning("closing the database: %s", exc.why)
            with trio.move_on_after(timeout):
                await trio.to_thread.run_sync(self.proc.wait)
            if self.proc.poll() is None:
                log.warning("the database process did not exit; killing it")
                self.proc.kill()
                await trio.to_thread.run_sync(self.proc.wait)
            if self._stream is not None:
                await self._stream.aclose()
            else:
                self._sock.close()
            for f in self._shared:
                f.close()

    def _open_stream(self) -> trio.SocketStream:
        if self._stream is None:
            self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(self._sock))
        return self._stream

    async def _receive(self, stream: trio.SocketStream) -> tuple[Any, ...]:
        buffer = self._buffer
        while True:
            if len(buffer) >= _ANSWER.size:
                (size,) = _ANSWER.unpack_from(buffer)
                if len(buffer) >= _ANSWER.size + size:
                    answer = pickle.loads(memoryview(buffer)[_ANSWER.size : _ANSWER.size + size])
                    del buffer[: _ANSWER.size + size]
                    return answer  # type: ignore[no-any-return]
            data = await stream.receive_some(1 << 20)
            if not data:
                raise trio.BrokenResourceError("the database process closed its socket")
            buffer += data

    def _gone_why(self, exc: BaseException | None = None) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(0.5)  # it closed its socket: it is exiting
        code = self.proc.poll()
        if code is None:
            return f"lost the database process (pid {self.proc.pid}): {exc}"
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return f"the database process (pid {self.proc.pid}) ended with {how}"


# -- the process's side ---------------------------------------------------------


class Applier:
    """Applies batches on the one write connection, each in one transaction."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.known_runs: set[str] = set()

    def apply(self, ops: list[Op]) -> Applied:
        conn = self.conn
        out = Applied()
        # Events wait here until a request or the end of the batch: they go to
        # the store in as few calls as can be (one, most often).
        pending: list[EventRow] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for index, (sid, op) in enumerate(ops):
                if sid in out.fatal:
                    out.skipped.add(index)
                elif op[0] == "events":
                    if self._check_runs(sid, op[2], out) and self._rows(sid, op[1], pending, out):
                        self._ack(out.acks.setdefault(sid, {}), op[2])
                    else:
                        out.skipped.add(index)
                else:
                    out.inserted += store.append_events(conn, pending)
                    pending.clear()
                    out.replies.append((sid, self._request(op[1], out)))
            out.inserted += store.append_events(conn, pending)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (after SQLITE_FULL, for one).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.known_runs.clear()  # a rolled-back run.start must not stay "known"
            raise
        return out

    def _check_runs(self, sid: int, top: dict[str, int], out: Applied) -> bool:
        for run in top:
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
    def _rows(sid: int, bodies: list[bytes], pending: list[EventRow], out: Applied) -> bool:
        """Add the rows of ``bodies`` to ``pending``; False (and the sender refused) on a
        payload the store cannot hold."""
        rows: list[EventRow] = []
        try:
            for body in bodies:
                add_rows(rows, unpack_body(body))
        except ProtocolError as exc:
            out.fatal[sid] = (exc.code, exc.message)
            return False
        pending += rows
        return True

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


class _Server:
    """The loop of the database process: one request, one answer."""

    def __init__(self, sock: socket.socket, shared: list[SharedFile], database: Path) -> None:
        self.sock = sock
        self.shared = shared
        self.database = database
        self.conn: apsw.Connection | None = None
        self.applier: Applier | None = None
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
        except store.StoreError as exc:
            return ("store", str(exc)), False
        except Exception as exc:
            return ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()), False

    def _open(self) -> store.Counts:
        if self.conn is None:
            self.conn = store.open_write_connection(self.database)
            self.applier = Applier(self.conn)
        return store.counts(self.conn)

    def _apply(self, ops: list[Op], again: bool) -> Applied | None:
        assert self.applier is not None, "apply before open"
        if self.blocked and not again:
            return None  # blocked; the daemon sends it again
        try:
            applied = self.applier.apply(ops)
        except _PASSING:
            self.blocked = True
            raise
        self.blocked = False
        return applied

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        assert self.applier is not None, "call before open"
        try:
            return fn(self.conn, *args)
        finally:
            self.applier.known_runs.clear()  # fn may have deleted runs

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
        header = self._read_exactly(_HEADER.size)
        if header is None:
            return None
        size, slot = _HEADER.unpack(header)
        data = self._read_exactly(size) if slot < 0 else self.shared[slot].read(size)
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
    return _ANSWER.pack(len(data)) + data


def main(argv: list[str]) -> int:
    # Ctrl-C on a daemon in the foreground reaches the whole process group:
    # the daemon stops in order and then closes us; we must not stop first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd, database = int(argv[0]), Path(argv[-1])
    shared = [SharedFile(int(arg)) for arg in argv[1:-1]]
    with socket.socket(fileno=fd) as sock:
        server = _Server(sock, shared, database)
        try:
            server.serve()
        finally:
            server._close()
            for f in shared:
                f.close()
    return 0


if __name__ == "__main__":
    # Through the module's own name, so that what we pickle (Applied) is
    # found as choo_daemon.dbproc.Applied on the daemon's side, not __main__'s.
    from choo_daemon import dbproc

    sys.exit(dbproc.main(sys.argv[1:]))
