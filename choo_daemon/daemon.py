"""The daemon: one trio nursery holding the socket listener and its sessions,
the single writer, and the web server.

``serve_daemon`` runs until ``request_shutdown`` (a signal, or a client's
``shutdown`` request); then it stops accepting, stops reading, lets the
writer commit and ack everything already received, checkpoints, and removes
its socket. The pid file is held by the caller (``__main__``) around it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from choo_daemon import __version__
from choo_daemon.dblink import DbProcess
from choo_daemon.hub import LiveHub
from choo_daemon.listener import open_unix_listener, peer_uid, remove_stale_socket
from choo_daemon.liveonly import LiveOnly, LiveOnlyReader
from choo_daemon.memory import give_back
from choo_daemon.orphans import GRACE_SECONDS, Orphans
from choo_daemon.outbox import RETRY_MAX, SEND_TIMEOUT, OtlpTarget, Outbox
from choo_daemon.reader import Reader
from choo_daemon.retention import prune, serve_retention
from choo_daemon.session import Session
from choo_daemon.spool import import_spool
from choo_daemon.store import utc_now
from choo_daemon.work import Inbound
from choo_daemon.writer import Writer
from protocol.home import Home, TokenFile, ensure_token, spool_status
from protocol.settings import default, exposed_warning

log = logging.getLogger("choo.daemon")

CHANNEL_SIZE = 32  # Inbound items, each one read of up to READ_SIZE bytes
MAX_CLIENTS = 256


@dataclass(frozen=True)
class DaemonOptions:
    home: Home
    host: str = default("daemon.host")
    port: int = default("daemon.port")
    retention_days: int | None = default("history.retention_days") or None  # None: keep every run
    grace_seconds: float = GRACE_SECONDS  # before an orphaned run is marked stopped
    set_aside_corrupt: bool = False  # move a damaged history.db aside and start a new one
    export: OtlpTarget | None = None  # continuous export of the runs that end (None: off)
    export_retry_max: float = RETRY_MAX  # the longest pause between two tries of the outbox
    export_timeout: float = SEND_TIMEOUT  # seconds one send may take


def _address_in_use(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE


class Daemon:
    version = __version__

    def __init__(self, options: DaemonOptions, db: DbProcess | None = None) -> None:
        """``db``: the database process, if started already (the daemon's
        ``main`` starts it first thing, so that it loads alongside)."""
        self.options = options
        self.home = options.home
        self.web_url: str | None = None
        self.writer = Writer(
            self.home.database,
            db,
            set_aside_corrupt=options.set_aside_corrupt,
            outbox=options.export is not None,
        )
        self.orphans = Orphans(self.writer, options.grace_seconds)
        self.reader = Reader(self.home.database)
        self.outbox = Outbox(
            self.writer,
            self.reader,
            options.export,
            retry_max=options.export_retry_max,
            timeout=options.export_timeout,
        )
        self.writer.listeners.append(self.outbox.committed)
        self.hub = LiveHub()
        self.writer.listeners.append(self.hub.publish)
        self.writer.listeners.append(self.orphans.committed)
        self.liveonly = LiveOnly(self.hub)  # runs shown live, never stored
        self.sessions: set[Session] = set()
        self._shutdown = trio.Event()
        self._started_at = utc_now()
        self._started_clock = time.monotonic()
        self._connections = 0

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def status(self) -> dict[str, Any]:
        db = self.home.database
        size = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
        return {
            "pid": os.getpid(),
            "version": self.version,
            "started_at": self._started_at,
            "uptime_s": round(time.monotonic() - self._started_clock, 3),
            "socket": str(self.home.socket),
            "database": str(db),
            "database_bytes": size,
            "web": self.web_url,
            # Set when the web UI binds a non-loopback address: what to say.
            "exposed": exposed_warning(self.options.host),
            "clients": len(self.sessions),
            "events_stored": self.writer.events_stored,
            "runs_stored": self.writer.runs_stored,
            "write_error": self.writer.failing,
            "active_runs": self.orphans.active(),
            "set_aside": self.writer.set_aside,
            "spool": spool_status(self.home.spool),
            "export": self.outbox.status(),
        }

    async def serve(
        self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED
    ) -> None:
        remove_stale_socket(self.home.socket)
        ensure_token(self.home)  # the web token, made at the first start
        send, receive = trio.open_memory_channel[Inbound](CHANNEL_SIZE)
        try:
            async with trio.open_nursery() as nursery:
                # The socket first: orchestrators can stream while the
                # database process opens the file and the web stack (the
                # slowest part to import) loads. A database that cannot be
                # opened still stops the daemon, with its reason.
                nursery.start_soon(self.writer.serve, receive)
                listener = await open_unix_listener(self.home.socket)
                nursery.start_soon(self._serve_clients, listener, send)
                self._jobs = await nursery.start(self._serve_jobs, send.clone())
                self.web_url = await nursery.start(self._serve_web)
                log.info(
                    "daemon %s ready: pid %d, socket %s, web %s, database %s",
                    self.version,
                    os.getpid(),
                    self.home.socket,
                    self.web_url,
                    self.home.database,
                )
                exposed = exposed_warning(self.options.host)
                if exposed:
                    log.warning("%s", exposed)
                await self.writer.ready.wait()
                task_status.started(self)
                await self._shutdown.wait()
                log.info("shutting down: draining %d client(s)", len(self.sessions))
                self.writer.stop_retrying()
                self.hub.close()  # end the SSE streams, so the web server stops at once
        finally:
            self.reader.close()
            with contextlib.suppress(FileNotFoundError):
                self.home.socket.unlink()
        log.info("daemon stopped; %d events stored in all", self.writer.events_stored)

    async def _serve_web(self, *, task_status: trio.TaskStatus[str]) -> None:
        # quart and hypercorn take a while to import: do it off the event
        # loop, so that the socket answers meanwhile.
        web = await trio.to_thread.run_sync(importlib.import_module, "choo_web.app")
        create_app, serve_web = web.create_app, web.serve_web

        host, port = self.options.host, self.options.port
        token = TokenFile(self.home.token)  # read again when rotated

        def app() -> Any:
            return create_app(
                self.status,
                reader=LiveOnlyReader(self.reader, self.liveonly),
                live=self.hub,
                token=token.current,
                allowed_hosts=[host],
                crowd_left=give_back,
            )

        try:
            await serve_web(app(), host, port, self._shutdown.wait, task_status=task_status)
            return
        except* OSError as group:
            # A port in use fails the bind, before anything is served (so
            # before task_status.started). It must not stop the daemon: the
            # socket side and history do not need it; the web UI takes
            # another port, and status shows the URL actually served.
            if port == 0 or not group.subgroup(_address_in_use):
                raise
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_web, app(), host, 0, self._shutdown.wait)
            log.warning("web port %d on %s is in use; the web UI is at %s instead", port, host, url)
            task_status.started(url)

    async def _serve_jobs(
        self,
        send: trio.MemorySendChannel[Inbound],
        *,
        task_status: trio.TaskStatus[trio.Nursery],
    ) -> None:
        """Background work (spool import, orphans, OTLP outbox, retention, prune) until
        shutdown."""
        async with trio.open_nursery() as jobs:
            await jobs.start(import_spool, self.home.spool, send)
            await jobs.start(self.orphans.serve)
            await jobs.start(self.outbox.serve)
            if self.options.retention_days is not None:
                await jobs.start(serve_retention, self.writer, self.options.retention_days)
            task_status.started(jobs)
            await self._shutdown.wait()
            jobs.cancel_scope.cancel()

    def start_job(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self._jobs.start_soon(fn, *args)

    async def prune(self, *, older_than_days: int, dry_run: bool) -> list[dict[str, Any]]:
        runs = await prune(self.writer, older_than_days=older_than_days, dry_run=dry_run)
        if not dry_run:
            log.info(
                "pruned %d run(s) started over %d days ago, on request", len(runs), older_than_days
            )
        return runs

    async def _serve_clients(
        self, listener: trio.SocketListener, send: trio.MemorySendChannel[Inbound]
    ) -> None:
        async with send, trio.open_nursery() as sessions:
            accept = trio.CancelScope()
            sessions.start_soon(self._stop_on_shutdown, accept)
            with accept:
                # serve_listeners waits and tries again when accept fails for
                # want of file descriptors or memory (EMFILE, ENFILE, ENOBUFS,
                # ENOMEM), where a plain accept loop would end; it closes the
                # listener when cancelled.
                await trio.serve_listeners(
                    functools.partial(self._admit, send), [listener], handler_nursery=sessions
                )
            # No new client from here on; those connected get their acks.
            with contextlib.suppress(FileNotFoundError):
                self.home.socket.unlink()

    async def _stop_on_shutdown(self, accept: trio.CancelScope) -> None:
        await self._shutdown.wait()
        accept.cancel()
        for session in list(self.sessions):
            session.stop_reading()

    async def _admit(
        self, send: trio.MemorySendChannel[Inbound], stream: trio.SocketStream
    ) -> None:
        """Serve one accepted connection (refused at once if it is not ours, or one too many)."""
        self._connections += 1
        session = Session(stream, self, self._connections)
        uid = peer_uid(stream)
        if uid is not None and uid != os.getuid():
            session.fail("forbidden", f"peer uid {uid} is not the daemon's uid {os.getuid()}")
        elif len(self.sessions) >= MAX_CLIENTS:
            session.fail("busy", f"all {MAX_CLIENTS} connections are in use")
        self.sessions.add(session)
        try:
            await session.serve(send.clone())
        finally:
            self.sessions.discard(session)
