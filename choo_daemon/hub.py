"""The live hub: fans every commit out to the web's SSE subscribers.

The writer calls ``publish`` in the trio thread after each commit; it must
never block nor slow ingest, so each subscriber gets a bounded buffer and
``publish`` only hands it a reference (``send_nowait``). A subscriber that
falls more than ``buffer_events`` events behind is dropped: its
subscription ends. The subscribers are the web's shared fan-out, not
browsers: one feed per watched run and one live board (``choo_web/feeds.py``,
``choo_web/board.py``), which subscribe again and read the gap back from
the store; a slow browser falls behind those, never behind the hub.

Subscribers either follow one run (``run_id``: only that run's rows and
changes) or every run (optionally of one repository; rows of runs known to
belong to another repository are not delivered).

Runs that are shown live but never stored (``liveonly.py``) are published
through ``publish_unrecorded``: as nothing can be read back for them once
they end, each of their batches carries the run's detail with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from choo_daemon.store import Col, EventRow

if TYPE_CHECKING:
    from choo_daemon.writer import Committed

log = logging.getLogger("choo.daemon")

MAX_BUFFERED_EVENTS = 10_000
MAX_BUFFERED_BATCHES = 1_000
REPO_CACHE_SIZE = 4_096

Change = tuple[str, str]  # (run_id, request type)


@dataclass(frozen=True, slots=True)
class Batch:
    """One commit as one subscriber sees it: event rows in commit order, then run changes."""

    rows: Sequence[EventRow]
    changes: Sequence[Change]
    # run_id -> the run's detail as it stands, for runs the history does not hold.
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return max(1, len(self.rows) + len(self.changes))


class Subscription:
    """A subscriber's end: ``await receive()`` until it returns None."""

    def __init__(self, run_id: str | None, repo: str | None, limit: int) -> None:
        self.run_id = run_id
        self.repo = repo
        self._limit = limit
        self._send, self._receive = trio.open_memory_channel[Batch](MAX_BUFFERED_BATCHES)
        self._buffered = 0  # events handed over, not yet received
        self._dropped = False

    @property
    def dropped(self) -> bool:
        return self._dropped

    @property
    def buffered(self) -> int:
        return self._buffered

    async def receive(self) -> Batch | None:
        """The next batch; None once dropped (at once) or ended (after the buffer)."""
        if self._dropped:
            return None
        try:
            batch = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        self._buffered -= batch.size
        return None if self._dropped else batch

    def receive_nowait(self) -> Batch | None:
        """The next batch if one is buffered already, else None."""
        if self._dropped:
            return None
        try:
            batch = self._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return None
        self._buffered -= batch.size
        return batch

    def _offer(self, batch: Batch) -> bool:
        """Buffer ``batch``; False if the subscriber is too far behind to take it."""
        if self._buffered >= self._limit:
            return False
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            return False
        except trio.ClosedResourceError:
            return True  # already ended; nothing to drop
        self._buffered += batch.size
        return True

    def _end(self, *, dropped: bool = False) -> None:
        self._dropped = self._dropped or dropped
        self._send.close()

    def _close(self) -> None:
        self._send.close()
        self._receive.close()


class LiveHub:
    def __init__(self, *, buffer_events: int = MAX_BUFFERED_EVENTS) -> None:
        self.buffer_events = buffer_events
        self._subscribers: dict[Subscription, None] = {}  # insertion-ordered set
        self._repos: dict[str, str] = {}
        self._closed = False
        self._published = 0
        self._delivered = 0
        self._dropped = 0

    # -- the writer's side ----------------------------------------------------

    def publish(self, committed: Committed) -> None:
        """Hand one commit to every interested subscriber (a writer listener)."""
        self._published += 1
        if not self._subscribers:
            return  # not even the rows are made
        self._fan_out(committed.rows, committed.runs_changed, {})

    def publish_unrecorded(
        self, rows: Sequence[EventRow], changes: Sequence[Change], details: Mapping[str, Any]
    ) -> None:
        """Hand a live-only run's rows and changes, with its detail, to the subscribers."""
        self._published += 1
        if self._subscribers:
            self._fan_out(rows, changes, details)

    def _fan_out(
        self, rows: Sequence[EventRow], changes: Sequence[Change], details: Mapping[str, Any]
    ) -> None:
        if not (rows or changes):
            return
        everything = Batch(rows, changes, details)
        by_run: dict[str, tuple[list[EventRow], list[Change]]] | None = None
        for sub in list(self._subscribers):
            if sub.run_id is None and sub.repo is None:
                batch: Batch | None = everything
            else:
                if by_run is None:
                    by_run = _group(rows, changes)
                batch = self._batch_for(sub, by_run, everything)
            if batch is None:
                continue
            if sub._offer(batch):
                self._delivered += 1
            else:
                self._drop(sub)

    def _batch_for(
        self,
        sub: Subscription,
        by_run: dict[str, tuple[list[EventRow], list[Change]]],
        everything: Batch,
    ) -> Batch | None:
        if sub.run_id is not None:
            mine = by_run.get(sub.run_id)
            return Batch(*mine, everything.details) if mine is not None else None
        # A repository filter: skip the batch only if every run in it is
        # known to belong elsewhere; the stream filters the rest row by row.
        for run_id in by_run:
            if self._repos.get(run_id, sub.repo) == sub.repo:
                return everything
        return None

    def _drop(self, sub: Subscription) -> None:
        self._dropped += 1
        log.warning(
            "live subscriber (%s) dropped: %d events behind; it will reconnect and replay",
            f"run {sub.run_id}" if sub.run_id else f"repo {sub.repo or 'any'}",
            sub.buffered,
        )
        self._subscribers.pop(sub, None)
        sub._end(dropped=True)

    def close(self) -> None:
        """End every subscription (at shutdown); later ones end at once."""
        self._closed = True
        for sub in self._subscribers:
            sub._end()
        self._subscribers.clear()

    # -- the web's side -------------------------------------------------------

    @contextmanager
    def subscribe(
        self, *, run_id: str | None = None, repo: str | None = None
    ) -> Iterator[Subscription]:
        sub = Subscription(run_id, repo, self.buffer_events)
        if self._closed:
            sub._end()
        else:
            self._subscribers[sub] = None
        try:
            yield sub
        finally:
            self._subscribers.pop(sub, None)
            sub._close()

    def repo_of(self, run_id: str) -> str | None:
        return self._repos.get(run_id)

    def remember_repo(self, run_id: str, repo_path: str) -> None:
        if run_id not in self._repos and len(self._repos) >= REPO_CACHE_SIZE:
            del self._repos[next(iter(self._repos))]  # the oldest entry
        self._repos[run_id] = repo_path

    def statistics(self) -> dict[str, int]:
        runs = sum(1 for sub in self._subscribers if sub.run_id is not None)
        return {
            "subscribers": len(self._subscribers),
            "run_subscribers": runs,
            "live_subscribers": len(self._subscribers) - runs,
            "batches_published": self._published,
            "batches_delivered": self._delivered,
            "subscribers_dropped": self._dropped,
        }


def _group(
    rows: Sequence[EventRow], changes: Sequence[Change]
) -> dict[str, tuple[list[EventRow], list[Change]]]:
    """Rows and changes by run, each run's in commit order."""
    by_run: dict[str, tuple[list[EventRow], list[Change]]] = {}
    for row in rows:
        entry = by_run.get(row[Col.RUN])
        if entry is None:
            by_run[row[Col.RUN]] = entry = ([], [])
        entry[0].append(row)
    for change in changes:
        entry = by_run.get(change[0])
        if entry is None:
            by_run[change[0]] = entry = ([], [])
        entry[1].append(change)
    return by_run
