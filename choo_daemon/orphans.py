"""Runs whose orchestrator went away.

A run belongs to one connection, its owner (PROTOCOL.md section 7,
*Owners*): the one that started or resumed it, or that presented the run's
owner token again (a client that reconnects re-sends its run.start or
run.resume). While it has an owner no other connection may write to it;
when it has none, the first connection that speaks for it and is allowed
to (``admits``) takes it. When that connection ends without run.complete,
or when the daemon starts and finds runs left ``running``, the run gets a
grace period: if no connection speaks for it again in time (a client that
reconnects and replays does), it is marked ``stopped`` with a
``run.stopped`` event saying why, so ``choo resume`` can continue it.

That marker is the daemon's guess, not the run's history: if the run's own
events arrive later (a client that stalled, a spool file), the store
retracts it and the run is running again; then, if nothing finishes it, it
gets a new grace period and a new marker after its last event.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import apsw
import trio

from choo_daemon import store
from choo_daemon.dbmsg import REOPENED
from choo_daemon.store.outbox import enqueue_export

if TYPE_CHECKING:
    from choo_daemon.writer import Committed, Writer

log = logging.getLogger("choo.daemon")

GRACE_SECONDS = 30.0


class Orphans:
    def __init__(self, writer: Writer, grace: float = GRACE_SECONDS) -> None:
        self.writer = writer
        self.grace = grace
        self._owner: dict[str, object] = {}  # run id -> the session speaking for it
        # run id -> the token of the run.start or run.resume that gave it its
        # owner; kept until the run completes, so that only that client takes
        # the run back while it is waited for, or after.
        self._token: dict[str, str | None] = {}
        self._until: dict[str, str] = {}  # run id -> when its grace period ends (UTC)
        self._nursery: trio.Nursery | None = None

    def claim(self, run: str, session: object) -> None:
        self._owner[run] = session
        self._until.pop(run, None)

    def take(self, run: str, session: object, token: str | None) -> None:
        """``session`` owns ``run`` now, by a run.start or run.resume carrying ``token``."""
        self._token[run] = token
        self.claim(run, session)

    def admits(self, run: str, session: object, token: str | None = None) -> bool:
        """May ``session`` write to ``run`` (presenting ``token``, if any)?

        Yes if it owns the run, if it presents the run's owner token, or if
        the run has no owner now and no token to present (a run unknown to
        this daemon, started without a token, or completed).
        """
        owner = self._owner.get(run)
        if owner is session:
            return True
        known = self._token.get(run)
        if token is not None and token == known:
            return True
        return owner is None and known is None

    def known(self, run: str) -> bool:
        """True if this daemon knows who owns ``run`` or waits for its owner."""
        return run in self._owner or run in self._token

    def release(self, run: str, session: object) -> None:
        """Forget a claim the store refused (run_exists, unknown_run) made by ``session``."""
        if self._owner.get(run) is session:
            self.finished(run)

    def finished(self, run: str) -> None:
        self._owner.pop(run, None)
        self._until.pop(run, None)
        self._token.pop(run, None)

    def owner(self, run: str) -> object | None:
        """The connection speaking for ``run`` now (None: none, or waited for)."""
        return self._owner.get(run)

    def waiting(self, run: str) -> bool:
        """True while the daemon waits for ``run``'s vanished orchestrator."""
        return run in self._owner and self._owner[run] is None

    def active(self) -> dict[str, dict[str, str | None]]:
        """Unfinished runs this daemon knows of: who speaks for each, or until
        when it waits for their orchestrator (for ``status``)."""
        return {
            run: {
                "client": getattr(owner, "name", None) if owner is not None else None,
                "waiting_until": self._until.get(run),
            }
            for run, owner in self._owner.items()
        }

    def committed(self, commit: Committed) -> None:
        """A writer listener: runs that ended, and runs the daemon had stopped that came back."""
        for run, kind in commit.runs_changed:
            if kind == "run.complete":
                self.finished(run)
            elif kind == REOPENED and run not in self._owner:
                # Events with nobody behind them (a spool file): wait again.
                self.watch(
                    run,
                    "events of the run arrived without its end (from a spool file), and its "
                    f"orchestrator did not come back within {self.grace:g} s",
                )

    def disconnected(self, session: object, name: str) -> None:
        """``session`` ended: watch every unfinished run it spoke for."""
        for run, owner in list(self._owner.items()):
            if owner is session:
                self.watch(
                    run,
                    f"the orchestrator ({name}) disconnected without finishing the run and "
                    f"did not come back within {self.grace:g} s",
                )

    def watch(self, run: str, reason: str) -> None:
        self._owner[run] = None
        until = datetime.now(UTC) + timedelta(seconds=self.grace)
        self._until[run] = store.iso_utc(until)
        # Once the daemon is stopping there is no one left to wait: the next
        # daemon finds the run still running and watches it then.
        if self._nursery is not None:
            # RuntimeError: the nursery is closing, the daemon is stopping.
            with contextlib.suppress(RuntimeError):
                self._nursery.start_soon(self._expire, run, reason)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch over orphaned runs; at start, the runs a previous daemon left running."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._reconcile()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def _reconcile(self) -> None:
        left: list[tuple[str, str | None]] = await self.writer.run_in_writer(
            store.running_owner_tokens
        )
        for run, token in left:
            self._token.setdefault(run, token)  # only its client takes it back
            if run not in self._owner:
                self.watch(
                    run,
                    "the daemon restarted while the run was running, and its orchestrator "
                    f"did not reconnect within {self.grace:g} s",
                )
        if left:
            log.info(
                "%d run(s) were left running; waiting %g s for their orchestrators",
                len(left),
                self.grace,
            )

    async def _expire(self, run: str, reason: str) -> None:
        await trio.sleep(self.grace)
        if run not in self._owner or self._owner[run] is not None:
            return  # finished, or someone speaks for it again
        del self._owner[run]
        self._until.pop(run, None)
        seq = await self.writer.run_in_writer(stop_run, run, reason, self.writer.outbox)
        if seq is not None:
            log.warning("run %s marked stopped: %s", run, reason)


def stop_run(conn: apsw.Connection, run: str, reason: str, outbox: bool = False) -> Any:
    """Mark ``run`` stopped; with ``outbox``, put it in the OTLP outbox in the same
    transaction (the daemon's stop ends the run as its run.complete would)."""
    with conn:
        try:
            now = store.utc_now()
            seq = store.mark_stopped(conn, run, time=now, reason=reason)
        except store.UnknownRun:
            return None  # pruned meanwhile
        if seq is not None and outbox:
            enqueue_export(conn, run, now)
        return seq
