"""DaemonClient: the orchestrator's side of the daemon's socket (trio).

The protocol of one connection (hello and welcome, the version check, which
frames the daemon may send, matching each reply to its request) lives in
the sans-IO ``protocol.ClientConnection``; this module is the trio loop
around it, and what outlives a connection: the journal, reconnects, the
backoffs, the spool.

Every frame that still needs an answer (an event until its ack, a request
until its reply) stays in an ordered journal. After a broken connection the
client reconnects (asking ``ensure_daemon`` to start a daemon again if it
was given one), says hello again and re-sends the whole journal in its
original order; the store ignores events it already has, so nothing is lost
and nothing is stored twice. A client made with ``durable=False`` (a run the
daemon only shows live, ``history: false``) has nothing worth keeping: when
its connection breaks it gives up instead, and it never spools.

A daemon that refuses a connection with ``busy`` (it has its maximum of
connections) is alive: the client waits (``busy_backoff``) and tries again,
without asking for a new daemon.

    DaemonError                 the daemon answered, but not with success
    ├── DaemonRefused           it closed the connection with a fatal error
    DaemonUnavailable           no daemon could be reached in time
    ├── DaemonBusy              one runs, but it stayed busy until the deadline
    SpoolFailed                 the spool file could not be written (disk full, …)
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import protocol
from choo.errors import ChooError
from protocol import Message
from protocol.backoff import delay, delays
from protocol.connection import Ack, ClientConnection, ClientEvent, Refused, Reply
from protocol.home import Home, new_spool_name

log = logging.getLogger("choo.client")

RECONNECT_FIRST, RECONNECT_MAX = 0.05, 1.0
# After a `busy` refusal (PROTOCOL.md section 8): 0.1 s, doubling up to 2 s, jittered.
BUSY_FIRST, BUSY_MAX = 0.1, 2.0
READ_SIZE = 256 * 1024


class DaemonError(ChooError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class DaemonRefused(DaemonError):
    """The daemon closed the connection with a fatal error; retrying won't help."""


class DaemonUnavailable(ChooError):
    """No daemon answered on the socket."""


class DaemonBusy(DaemonUnavailable):
    """A daemon runs but refused every try until the deadline with ``busy``."""

    def __init__(self, socket: Path, message: str) -> None:
        super().__init__(f"the daemon on {socket} is busy ({message}); try again in a moment")
        self.message = message  # the daemon's own words, e.g. "all 256 connections are in use"


class SpoolFailed(ChooError):
    """Events that could not be written to the spool; they are lost with this process."""

    def __init__(self, folder: Path, events: int, reason: str) -> None:
        super().__init__(f"could not write the spool file in {folder}: {reason}")
        self.folder = folder
        self.events = events
        self.reason = reason


def busy_backoff(tries: int) -> float:
    """Seconds to wait after the ``tries``-th ``busy`` in a row (1, 2, ...).

    A random time between half and all of min(0.1 × 2^(tries-1), 2) s, so that
    clients refused together do not all come back together.
    """
    return delay(BUSY_FIRST, BUSY_MAX, tries, jitter=True)


def _private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) mode 0700 whatever the umask."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    except FileNotFoundError:
        _private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode went through the umask


def write_spool_file(folder: Path, data: bytes) -> Path:
    """Write ``data`` as a new spool file in ``folder``, all or nothing.

    The file is mode 0600 whatever the umask; it appears under its final name
    only once complete and synced, and on any failure (a full disk) no
    temporary file is left behind.
    """
    _private_dir(folder)
    path = folder / new_spool_name()
    tmp = folder / f".{path.stem}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "wb") as f:
            os.fchmod(fd, 0o600)  # open's mode went through the umask too
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # the daemon never sees half a file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# A request's frame, or an event as (run, packed item).
_Entry = bytes | tuple[str, bytes]
BATCH_BYTES = 64 * 1024


def _encode(entries: list[_Entry]) -> bytes:
    """Frames for ``entries``: consecutive events of a run share an "events" frame."""
    out: list[bytes] = []
    run = ""
    items: list[bytes] = []
    size = 0
    for entry in entries:
        if isinstance(entry, bytes):
            if items:
                out.append(protocol.encode_events(run, items))
                items, size = [], 0
            out.append(entry)
            continue
        if entry[0] != run or size + len(entry[1]) > BATCH_BYTES:
            if items:
                out.append(protocol.encode_events(run, items))
            run, items, size = entry[0], [], 0
        items.append(entry[1])
        size += len(entry[1])
    if items:
        out.append(protocol.encode_events(run, items))
    return b"".join(out)


@dataclass
class _Reply:
    done: trio.Event = field(default_factory=trio.Event)
    data: dict[str, Any] | None = None
    error: DaemonError | None = None


class DaemonClient:
    def __init__(
        self,
        home: Home,
        *,
        name: str = "choo",
        ensure_daemon: Callable[[], Awaitable[None]] | None = None,
        durable: bool = True,
    ) -> None:
        self.home = home
        self.name = name
        self.durable = durable
        self.welcome: Message | None = None
        self.reconnects = 0
        # Called with (run, seq) for every ack; for progress displays and benchmarks.
        self.on_ack: Callable[[str, int], None] | None = None
        self._ensure_daemon = ensure_daemon
        # Unanswered work in send order: request frames, and events as
        # (run, packed item) that the sender groups into "events" frames.
        self._journal: dict[tuple[str, int], _Entry] = {}
        # The run.start (req, frame) of each run this client started and has
        # not completed, or the run.resume of each it resumed. It is sent
        # again ahead of each replay: its token gives the run back to this
        # client (PROTOCOL.md section 7, *Owners*), and a daemon whose
        # history.db was deleted or replaced meanwhile does not know the run,
        # and would refuse its events. A repeated run.start or run.resume
        # (same token) changes nothing else.
        self._starts: dict[str, tuple[int, bytes]] = {}
        self._queue: list[_Entry] = []  # not yet written on this connection
        self._wake = trio.Event()
        self._stream: trio.SocketStream | None = None
        self._replies: dict[int, _Reply] = {}
        self._req_ids = itertools.count(1)
        self._sent: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._ack_changed = trio.Event()
        self._fatal: DaemonRefused | None = None
        self._conn: ClientConnection | None = None  # the protocol state of the connection

    # -- public API ---------------------------------------------------------

    @property
    def web_url(self) -> str | None:
        return self.welcome.get("web") if self.welcome else None

    def send_event(
        self,
        run: str,
        seq: int,
        type: str,
        *,
        time: str,
        unit: str | None = None,
        task: int | None = None,
        pr: int | None = None,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Queue an event; never blocks. It is kept until the daemon acks it.

        Raises FrameTooLarge (at once) for an event too big to ever be sent.
        """
        if self._fatal is not None:
            raise self._fatal
        entry = (run, protocol.pack_event_item(seq, time, type, unit, task, pr, payload, error))
        self._journal[(run, seq)] = entry
        if seq > self._sent.get(run, 0):
            self._sent[run] = seq
        self._push(entry)

    def unacked(self, run: str | None = None) -> int:
        """Events sent and not yet acked (for one run, or all)."""
        return sum(1 for key in self._journal if key[0] != "" and (run is None or key[0] == run))

    def spool(self) -> tuple[Path, int] | None:
        """Write everything still unanswered to a spool file, for the next daemon.

        Returns the file and how many events it holds (None if nothing was
        pending). The frames are those the client would have sent, in order;
        the daemon imports them at its next start. The client stops sending.
        Raises SpoolFailed when the file cannot be written (a full disk):
        then no file is left, and the events are lost with this process.
        """
        if not self._journal or not self.durable:
            return None  # a live-only run is not history: it is never spooled
        entries = list(self._journal.values())
        events = sum(1 for e in entries if isinstance(e, tuple))
        self._journal.clear()
        self._queue.clear()
        folder = self.home.spool
        try:
            path = write_spool_file(folder, _encode(entries))
        except OSError as exc:
            self._fatal = DaemonRefused("spool_failed", f"could not write to {folder}: {exc}")
            raise SpoolFailed(folder, events, exc.strerror or str(exc)) from exc
        self._fatal = DaemonRefused("spooled", f"history was written to {path}")
        return path, events

    async def start_run(
        self,
        run: str,
        *,
        repo_path: str,
        started_at: str,
        parallelism: int,
        total_units: int,
        tasks_dir: str | None = None,
        dry_run: bool = False,
        graph: dict[str, list[Any]] | None = None,
        history: bool = True,
    ) -> dict[str, Any]:
        """Record a new run (and then its graph, if given).

        Raises DaemonError ``run_exists`` if another run holds the ID. The
        request carries a token of its own, so that the daemon tells a re-sent
        copy (after a reconnect, or from a spool file) from that other run;
        the graph goes only once the run is ours, never onto another's.

        ``history=False``: the daemon shows the run live but stores nothing of it.
        """
        message: Message = {
            "t": "run.start",
            "run": run,
            "repo_path": repo_path,
            "started_at": started_at,
            "parallelism": parallelism,
            "total_units": total_units,
            "tasks_dir": tasks_dir,
            "dry_run": dry_run,
            "token": uuid.uuid4().hex,
        }
        if not history:
            message["history"] = False
        started = self._enqueue(message)
        # Kept to be sent again before each replay (a new history.db must know the run).
        self._starts[run] = (message["req"], protocol.encode(message))
        try:
            data = await self._wait(started)
        except DaemonError:
            del self._starts[run]  # not ours: never send it again
            raise
        if graph is not None:
            await self._request({"t": "run.graph", "run": run, **graph})
        return data

    async def graph(self, run: str, nodes: list[Any], edges: list[Any], levels: list[Any]) -> None:
        await self._request(
            {"t": "run.graph", "run": run, "nodes": nodes, "edges": edges, "levels": levels}
        )

    async def append_resume_marker(self, run: str, *, time: str, reason: str | None = None) -> int:
        """Append ``run.resumed`` to a run; returns its seq (number on from seq + 1).

        The run is then this client's (its owner): the request is sent again
        ahead of each replay, as a run.start is, to take it back.
        """
        message: Message = {
            "t": "run.resume",
            "run": run,
            "time": time,
            "token": uuid.uuid4().hex,
            "reason": reason,
        }
        data = await self._request(message)
        self._starts[run] = (message["req"], protocol.encode(message))
        last_seq = int(data["last_seq"])
        self._sent[run] = max(self._sent.get(run, 0), last_seq)
        self._acked[run] = max(self._acked.get(run, 0), last_seq)
        return last_seq

    async def wait_acked(self, run: str, seq: int | None = None) -> None:
        """Return once every event of ``run`` up to ``seq`` (default: all sent) is acked."""
        target = self._sent.get(run, 0) if seq is None else seq
        while self._acked.get(run, 0) < target:
            if self._fatal is not None:
                raise self._fatal
            await self._ack_changed.wait()

    async def complete_run(
        self,
        run: str,
        *,
        status: str,
        completed_at: str,
        completed_units: int = 0,
        failed_units: int = 0,
        blocked_units: int = 0,
        error: str | None = None,
    ) -> None:
        """Record the run's end; returns once it and all the run's events are stored.

        The request goes after the run's events, in order, so the daemon
        stores them first; if the reply never comes it stays in the journal
        (and in the spool, see ``spool``).
        """
        await self._request(
            {
                "t": "run.complete",
                "run": run,
                "status": status,
                "completed_at": completed_at,
                "completed_units": completed_units,
                "failed_units": failed_units,
                "blocked_units": blocked_units,
                "error": error,
            }
        )
        await self.wait_acked(run)
        self._starts.pop(run, None)

    async def status(self) -> dict[str, Any]:
        return await self._request({"t": "status"})

    async def prune(self, older_than_days: int, *, dry_run: bool = False) -> dict[str, Any]:
        """Delete (with ``dry_run``: only list) the finished runs started over
        ``older_than_days`` days ago: ``{runs, count, dry_run}``."""
        return await self._request(
            {"t": "history.prune", "older_than_days": older_than_days, "dry_run": dry_run}
        )

    async def shutdown(self) -> None:
        await self._request({"t": "shutdown"})

    # -- plumbing -----------------------------------------------------------

    def _push(self, entry: _Entry) -> None:
        if self._stream is not None:
            self._queue.append(entry)
            self._wake.set()

    async def _request(self, message: Message) -> dict[str, Any]:
        return await self._wait(self._enqueue(message))

    def _enqueue(self, message: Message) -> _Reply:
        """Put a request in the journal (and on the wire); its reply comes later."""
        if self._fatal is not None:
            raise self._fatal
        req = next(self._req_ids)
        message["req"] = req
        reply = self._replies[req] = _Reply()
        frame = protocol.encode(message)
        self._journal[("", req)] = frame
        if self._stream is not None and self._conn is not None:
            self._conn.expect_reply(req)  # it goes out on this connection (_push)
        self._push(frame)
        return reply

    @staticmethod
    async def _wait(reply: _Reply) -> dict[str, Any]:
        await reply.done.wait()
        if reply.error is not None:
            raise reply.error
        return reply.data or {}

    async def maintain(self, stream: trio.SocketStream) -> None:
        """Serve a connected stream, then reconnect for as long as the client lives."""
        while True:
            try:
                lost = await self._serve_connection(stream)
            finally:
                self._stream = None
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            if self._fatal is None and not self.durable:
                self._fatal = DaemonRefused("disconnected", f"the daemon went away ({lost})")
                self._journal.clear()
                self._queue.clear()
            if self._fatal is not None:
                self._release_waiters()
                return
            log.info("connection to the daemon lost (%s); reconnecting", lost)
            self.reconnects += 1
            stream = await self.connect(deadline=None)

    async def connect(self, *, deadline: float | None) -> trio.SocketStream:
        """Connect and say hello, retrying until ``deadline`` (None: forever).

        A ``busy`` refusal means the daemon lives but has no free connection:
        wait ``busy_backoff`` and try again, without starting a daemon.
        """
        pauses = delays(RECONNECT_FIRST, RECONNECT_MAX)
        busy = 0
        while True:
            try:
                stream = await trio.open_unix_socket(os.fspath(self.home.socket))
                await self._handshake(stream)
                return stream
            except DaemonRefused as exc:
                if exc.code != "busy":
                    raise
                busy += 1
                wait = busy_backoff(busy)
                if deadline is not None and trio.current_time() + wait > deadline:
                    raise DaemonBusy(self.home.socket, exc.message) from None
                log.info("the daemon is busy (%s); trying again in %.2f s", exc.message, wait)
                await trio.sleep(wait)
                continue
            except (
                OSError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                protocol.ProtocolError,
            ) as exc:
                problem = exc
            busy = 0
            pause = next(pauses)
            if deadline is not None and trio.current_time() + pause > deadline:
                raise DaemonUnavailable(
                    f"no daemon answers on {self.home.socket} ({problem})"
                ) from None
            if self._ensure_daemon is not None:
                began = trio.current_time()
                try:
                    await self._ensure_daemon()
                except Exception as exc:  # the next attempt reports it again
                    log.warning("could not start the daemon: %s", exc)
                else:
                    if deadline is not None:
                        # A start that succeeded (slowly, on a busy machine, or
                        # more than once) takes nothing from the connection's time.
                        deadline += trio.current_time() - began
            await trio.sleep(pause)

    async def _handshake(self, stream: trio.SocketStream) -> None:
        conn = ClientConnection(self.name, os.getpid())
        try:
            with trio.fail_after(10):
                # A daemon that refuses us (busy) may hang up before our hello
                # is written; its error is still there to read.
                hung_up: trio.BrokenResourceError | None = None
                try:
                    await stream.send_all(conn.data_to_send())
                except trio.BrokenResourceError as exc:
                    hung_up = exc
                while True:
                    data = await stream.receive_some(READ_SIZE)
                    if not data:
                        raise hung_up or trio.BrokenResourceError(
                            "daemon closed during the handshake"
                        )
                    events = conn.receive_data(data)
                    if events:
                        break
        except BaseException:
            await stream.aclose()
            raise
        first = events[0]  # Welcome or Refused: the connection allows nothing else first
        if isinstance(first, Refused):
            await stream.aclose()
            raise DaemonRefused(first.code, first.message)
        self.welcome = conn.welcome
        self._conn = conn
        self._handle(events[1:])

    async def _serve_connection(self, stream: trio.SocketStream) -> BaseException | None:
        """Talk on ``stream`` until it breaks; returns what broke it."""
        self._stream = stream
        # Re-send everything still unanswered, in the order it was first sent,
        # behind the run.start of each open run (if not among it already).
        starts = [(req, f) for req, f in self._starts.values() if ("", req) not in self._journal]
        assert self._conn is not None  # set by the handshake on this stream
        for req, _ in starts:
            self._conn.expect_reply(req)
        for run, req in self._journal:
            if run == "":
                self._conn.expect_reply(req)
        self._queue = [*(f for _, f in starts), *self._journal.values()]
        self._wake.set()
        lost: list[BaseException] = []

        async def guarded(loop: Callable[[trio.SocketStream], Awaitable[None]]) -> None:
            try:
                await loop(stream)
            except (
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                OSError,
                protocol.ProtocolError,
            ) as exc:
                lost.append(exc)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded, self._send_loop)
            nursery.start_soon(guarded, self._receive_loop)
        return lost[0] if lost else None

    async def _send_loop(self, stream: trio.SocketStream) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._queue:
                entries, self._queue = self._queue, []
                await stream.send_all(_encode(entries))

    async def _receive_loop(self, stream: trio.SocketStream) -> None:
        while True:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise trio.BrokenResourceError("the daemon closed the connection")
            assert self._conn is not None
            self._handle(self._conn.receive_data(data))

    def _handle(self, events: list[ClientEvent]) -> None:
        for event in events:
            if isinstance(event, Ack):
                self._on_ack(event.run, event.seq)
            elif isinstance(event, Reply):
                self._on_reply(event)
            elif isinstance(event, Refused):
                self._fatal = DaemonRefused(event.code, event.message)
                log.error("the daemon refused this client: %s", self._fatal)

    def _on_ack(self, run: str, seq: int) -> None:
        done = self._acked.get(run, 0)
        if seq <= done:
            return
        journal = self._journal
        for n in range(done + 1, seq + 1):
            journal.pop((run, n), None)
        self._acked[run] = seq
        if self.on_ack is not None:
            self.on_ack(run, seq)
        self._ack_changed.set()
        self._ack_changed = trio.Event()

    def _on_reply(self, reply: Reply) -> None:
        self._journal.pop(("", reply.req), None)
        waiting = self._replies.pop(reply.req, None)
        if waiting is None:
            return  # a reply to a re-sent run.start (_starts) carries no news
        if reply.code is not None:
            waiting.error = DaemonError(reply.code, reply.message)
        else:
            waiting.data = reply.data or {}
        waiting.done.set()

    def _release_waiters(self) -> None:
        for reply in self._replies.values():
            reply.error = self._fatal
            reply.done.set()
        self._replies.clear()
        self._ack_changed.set()


@asynccontextmanager
async def open_daemon_client(
    home: Home,
    *,
    name: str = "choo",
    connect_timeout: float = 5.0,
    ensure_daemon: Callable[[], Awaitable[None]] | None = None,
    durable: bool = True,
) -> AsyncIterator[DaemonClient]:
    """Connect to the daemon (raising DaemonUnavailable if none answers in time)."""
    client = DaemonClient(home, name=name, ensure_daemon=ensure_daemon, durable=durable)
    stream = await client.connect(deadline=trio.current_time() + connect_timeout)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.maintain, stream)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Only the caller's block can fail here: hand its exception back as is.
        # (Not except*: whatever an except* clause raises comes out in a group.)
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
