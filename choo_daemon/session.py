"""One client connection: the trio loop around a ``protocol.ServerConnection``.

The protocol itself (handshake and version check, which messages a client
may send, which errors are replies and which are fatal) lives in the
sans-IO ``ServerConnection``. A session only moves bytes and acts: it reads
from the socket and feeds the connection, keeps the clock (the handshake
and half-frame timeouts), and passes the requests and events it is handed,
in arrival order, to the single writer through the bounded channel (so a
fast client is slowed down by the writer, never buffered without limit).
Requests the daemon answers itself (``status``, ``shutdown``,
``history.prune``), runs without history, and the take-over of a run
another connection speaks for are decided here. The writer answers through
``send_nowait``: acks and replies are queued on the connection, whose bytes
the session's sender task writes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import trio

from choo_daemon.dbmsg import TAKE_OVER
from choo_daemon.work import Events, Inbound
from protocol import Message, ProtocolError
from protocol.connection import HALF_FRAME_TIMEOUT, HANDSHAKE_TIMEOUT, ServerConnection, State
from protocol.errors import NotOwner
from protocol.redact import redact

if TYPE_CHECKING:
    from choo_daemon.liveonly import LiveOnly
    from choo_daemon.orphans import Orphans
    from choo_daemon.writer import Writer

log = logging.getLogger("choo.daemon")

# A peer that stops reading its acks for this long is dropped.
SEND_TIMEOUT = 30.0
MAX_OUTBOX = 8 * 1024 * 1024
READ_SIZE = 64 * 1024
# A day count beyond this is no date at all (found by scripts/fuzz_daemon.py).
MAX_PRUNE_DAYS = 36500


class Host(Protocol):
    """What a session needs of the daemon (``daemon.Daemon``)."""

    version: str
    web_url: str | None
    orphans: Orphans
    liveonly: LiveOnly
    writer: Writer

    def status(self) -> dict[str, Any]: ...
    def request_shutdown(self) -> None: ...
    def start_job(self, fn: Callable[..., Awaitable[object]], *args: object) -> None: ...
    async def prune(self, *, older_than_days: int, dry_run: bool) -> list[dict[str, Any]]: ...


class Session:
    """The loop around one ``ServerConnection``: socket bytes in, frames out, work to the writer."""

    def __init__(self, stream: trio.SocketStream, daemon: Host, number: int) -> None:
        self.stream = stream
        self.daemon = daemon
        self.conn = ServerConnection(daemon.version, lambda: daemon.web_url)
        self._number = number
        self._wake = trio.Event()
        self._finished = False  # reader done and every item answered
        self._broken = False
        self._pending = 0  # Inbound items handed to the writer, not yet answered
        self._drained = trio.Event()
        self._drained.set()
        self._reader_scope = trio.CancelScope()
        self._runs: set[str] = set()  # unfinished runs this connection speaks for
        # req -> run of a run.start or run.resume that made this connection the
        # owner of a run the daemon did not know: if the store refuses it, the
        # claim is forgotten.
        self._claims: dict[int, str] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def name(self) -> str:
        """The client's name from its hello, for logs (a number before it)."""
        return self.conn.peer or f"client#{self._number}"

    # -- called by the writer and the daemon (trio thread) -------------------

    def send_nowait(self, message: Message) -> None:
        """Queue a frame for the peer; drop the peer if it stopped reading."""
        if self._claims and message.get("req") in self._claims:
            run = self._claims.pop(message["req"])
            if message["t"] == "error":
                self.daemon.orphans.release(run, self)
        if self._broken:
            return
        self.conn.send(message)
        self._wake.set()
        if self.conn.pending_output > MAX_OUTBOX:
            log.warning("%s: dropped, it stopped reading its acks", self.name)
            self.conn.data_to_send()  # thrown away
            self.close()

    def fail(self, code: str, message: str) -> None:
        """Send a fatal error and close the connection after it."""
        log.warning("%s: %s: %s", self.name, code, message)
        if not self._broken:
            self.conn.fail(code, message)
            self._wake.set()
        self.close()

    def close(self) -> None:
        """Read nothing more; hang up once what was read is answered."""
        self._reader_scope.cancel()

    def done(self, count: int = 1) -> None:
        """The writer has answered ``count`` of our Inbound items."""
        self._pending -= count
        if self._pending == 0:
            self._drained.set()

    def stop_reading(self) -> None:
        """Shutdown: read nothing more; what was read is still answered."""
        self._reader_scope.cancel()

    # -- the connection's tasks ----------------------------------------------

    async def serve(self, send: trio.MemorySendChannel[Inbound]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._sender)
                with self._reader_scope:
                    async with send:
                        await self._read(send)
                # Everything we handed over gets its ack before we hang up.
                await self._drained.wait()
                self._finished = True
                self._wake.set()
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await self.stream.aclose()
            if self._runs:
                self.daemon.orphans.disconnected(self, self.name)
            self.daemon.liveonly.disconnected(self, self.name)

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self.conn.pending_output:
                data = self.conn.data_to_send()
                try:
                    with trio.fail_after(SEND_TIMEOUT):
                        await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                    self._broken = True
                    self._drained.set()
                    self._reader_scope.cancel()
                    return
            if self._finished and not self.conn.pending_output:
                return

    def _flush(self) -> None:
        """Wake the sender for what the connection queued itself (welcome, errors)."""
        if self.conn.pending_output:
            self._wake.set()

    async def _read(self, send: trio.MemorySendChannel[Inbound]) -> None:
        conn = self.conn
        hello_by = trio.current_time() + HANDSHAKE_TIMEOUT
        partial_by = float("inf")  # when an incomplete frame must be whole
        whole = False
        while True:
            deadline = partial_by if conn.greeted else hello_by
            with trio.move_on_at(deadline) as waited:
                try:
                    data = await self.stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            if waited.cancelled_caught:
                conn.time_out()
            elif not data:
                try:
                    conn.receive_data(b"")
                except ProtocolError as exc:
                    log.info("%s: %s", self.name, exc.message)
                return
            else:
                conn.receive_data(data)
                whole = False  # a frame was completed: an incomplete one now is a new one
                while messages := conn.next_messages():
                    whole = True
                    self._flush()
                    if not await self._handle(send, messages):
                        return
            self._flush()
            if conn.state is State.CLOSED:
                if conn.failure is not None:
                    failure = conn.failure
                    log.warning("%s: %s: %s", self.name, failure.code, failure.message)
                self.close()
                return
            if not conn.mid_frame:
                partial_by = float("inf")
            elif partial_by == float("inf") or whole:
                # The timer is for one frame: a client streaming without pause
                # may end every read inside a frame, and never stall.
                partial_by = trio.current_time() + HALF_FRAME_TIMEOUT

    async def _handle(self, send: trio.MemorySendChannel[Inbound], messages: list[Message]) -> bool:
        """Route the connection's messages (requests and events); False once it must end."""
        inbound = Inbound(self)
        items = inbound.items
        events: Events | None = None
        ok = True
        live_only = self.daemon.liveonly
        orphans = self.daemon.orphans
        for msg in messages:
            if live_only.wants(msg):
                # A run that is not recorded (history: false) never reaches the writer.
                try:
                    live_only.take(self, msg)
                except ProtocolError as exc:
                    self.fail(exc.code, exc.message)
                    ok = False
                    break
                continue
            kind = msg["t"]
            if kind == "event" or kind == "events":
                if not orphans.admits(msg["run"], self):
                    self.fail(*_not_owner(msg, self._owner_name(msg["run"])))
                    ok = False
                    break
                if events is None:
                    events = Events()
                    items.append(events)
                try:
                    events.add(msg)
                except ProtocolError as exc:
                    self.fail(exc.code, exc.message)
                    ok = False
                    break
                if msg["run"] not in self._runs:
                    self._runs.add(msg["run"])
                    orphans.claim(msg["run"], self)
                continue
            events = None
            if kind == "run.resume" and (busy_with := self._resumed_elsewhere(msg)):
                self.send_nowait(busy_with)
                continue
            if kind == "run.resume":
                msg = {**msg, TAKE_OVER: orphans.waiting(msg["run"])}
            if kind in _WRITES:
                if not self._own(msg):
                    continue
                items.append(redact_request(msg))
                if kind == "run.complete":
                    self._runs.discard(msg["run"])
                    orphans.finished(msg["run"])
            else:
                self._local[kind](self, msg)
        if items:
            self._pending += 1
            self._drained = trio.Event()
            try:
                await send.send(inbound)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self.done()
                return False
            except trio.Cancelled:
                # close() or stop_reading() while handing over: the writer never
                # got it, so it will never answer it; count it as answered or
                # serve() waits for it forever.
                self.done()
                raise
        return ok

    def _own(self, msg: Message) -> bool:
        """Take or check the ownership a write request needs; False: refused (answered).

        run.start and run.resume give the run to this connection when it may
        have it (PROTOCOL.md section 7, *Owners*); run.graph and run.complete
        need it. A run.start that may not take the run is passed on without
        it: the store answers it (run_exists, or a copy's created: false).
        """
        orphans, run, kind = self.daemon.orphans, msg["run"], msg["t"]
        token = msg.get("token")
        if kind == "run.start" or kind == "run.resume":
            if kind == "run.resume" or orphans.admits(run, self, token):
                if not orphans.known(run):
                    self._claims[msg["req"]] = run  # forgotten if the store refuses it
                orphans.take(run, self, token)
                self._runs.add(run)
            return True
        if orphans.admits(run, self):
            self._runs.add(run)
            orphans.claim(run, self)
            return True
        code, message = _not_owner(msg, self._owner_name(run))
        self.send_nowait({"t": "error", "req": msg["req"], "code": code, "message": message})
        return False

    def _owner_name(self, run: str) -> str:
        owner = self.daemon.orphans.owner(run)
        if owner is None:
            return "the client that started or resumed it, which is gone now"
        return str(getattr(owner, "name", "a client"))

    def _resumed_elsewhere(self, msg: Message) -> Message | None:
        """The refusal for a resume of a run another live connection runs, if it is one."""
        orphans = self.daemon.orphans
        owner = orphans.owner(msg["run"])
        if owner is None or owner is self:
            return None
        if orphans.admits(msg["run"], self, msg["token"]):
            return None  # its owner's resume, sent again from a new connection
        return {
            "t": "error",
            "req": msg["req"],
            "code": "run_active",
            "message": f"run {msg['run']} is being run by {getattr(owner, 'name', 'a client')}, "
            "which is connected now; stop it first",
        }

    def _status(self, msg: Message) -> None:
        if self.daemon.writer.ready.is_set():
            self._send_status(msg)
        else:  # just started: the counts come from the database process
            assert self._nursery is not None
            self._nursery.start_soon(self._status_when_ready, msg)

    async def _status_when_ready(self, msg: Message) -> None:
        await self.daemon.writer.ready.wait()
        self._send_status(msg)

    def _send_status(self, msg: Message) -> None:
        data = self.daemon.status()
        data["clients"] -= 1  # not counting the one asking
        self.send_nowait({"t": "ok", "req": msg["req"], "data": data})

    def _shutdown(self, msg: Message) -> None:
        log.info("%s asked the daemon to shut down", self.name)
        self.send_nowait({"t": "ok", "req": msg["req"], "data": {}})
        self.daemon.request_shutdown()

    def _prune(self, msg: Message) -> None:
        self.daemon.start_job(self._prune_job, msg)

    async def _prune_job(self, msg: Message) -> None:
        req = msg["req"]
        days = msg["older_than_days"]
        if not 1 <= days <= MAX_PRUNE_DAYS:
            self.send_nowait(
                {
                    "t": "error",
                    "req": req,
                    "code": "bad_field",
                    "message": f"older_than_days must be 1 to {MAX_PRUNE_DAYS}, got {days}",
                }
            )
            return
        dry_run = bool(msg.get("dry_run", False))
        runs = await self.daemon.prune(older_than_days=days, dry_run=dry_run)
        self.send_nowait(
            {"t": "ok", "req": req, "data": {"runs": runs, "count": len(runs), "dry_run": dry_run}}
        )

    _local: ClassVar[dict[str, Callable[[Session, Message], None]]] = {
        "history.prune": _prune,
        "status": _status,
        "shutdown": _shutdown,
    }


_WRITES = frozenset({"run.start", "run.resume", "run.graph", "run.complete"})


def _not_owner(msg: Message, owner: str) -> tuple[str, str]:
    """The ``not_owner`` error (code, message) for ``msg``, about a run ``owner`` owns."""
    what = "events" if msg["t"] in ("event", "events") else msg["t"]
    error = NotOwner(msg["run"], owner, what)
    return error.code, error.message


# The strings a write request stores, scrubbed like event payloads; run ids,
# times, statuses and resume tokens are identifiers and stay as they are.
_STORED_TEXT: dict[str, tuple[str, ...]] = {
    "run.start": ("repo_path", "tasks_dir"),
    "run.resume": ("reason",),
    "run.graph": ("nodes", "edges", "levels"),
    "run.complete": ("error",),
}


def redact_request(msg: Message) -> Message:
    """A write request with every string it stores scrubbed of secrets."""
    scrubbed = {k: redact(msg[k]) for k in _STORED_TEXT.get(msg["t"], ()) if k in msg}
    return {**msg, **scrubbed} if scrubbed else msg
