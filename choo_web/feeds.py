"""One run's live events, serialised once and shared by every stream of that run.

A run stream used to hold its own hub subscription, and turned each event
into SSE bytes itself: twenty viewers of a busy run cost twenty buffers
and twenty serialisations of every event, and a viewer that fell behind was
dropped. Here a run that is watched has one ``RunFeed``: one hub
subscription, drained by one task, that turns each event into its message
once and keeps the latest ones in a bounded ring. A viewer holds only a
position in that ring. One that falls behind the ring's oldest entry
(it reads slower than the run writes) is not dropped: it skips to the
oldest entry still held, and its stream tells the client the gap with a
``catchup`` message (the client fetches it through the events API).

Entries are either an event (its seq and its message) or a change (a
``run.*`` request the hub announced: markers and ends are read back from the
store, or, for a live-only run, taken from the detail the batch carries).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from choo_web.eventdict import event_from_row
from choo_web.jsonio import dumps
from choo_web.sources import Batch, LiveSource

log = logging.getLogger("choo.web")

# What a feed keeps: about 5 s of a run writing 400 events/s, and at most
# this many bytes of messages (a few large payloads must not pin memory).
RING_EVENTS = 2048
RING_BYTES = 4 << 20

Spawn = Callable[[Callable[[], Any]], None]


def message(event: str, data: Any, id: int | None = None) -> bytes:
    """One SSE message (§5.1 of docs/API.md)."""
    head = f"id: {id}\nevent: {event}\n" if id is not None else f"event: {event}\n"
    return head.encode() + b"data: " + dumps(data) + b"\n\n"


@dataclass(frozen=True, slots=True)
class Entry:
    """An event (``seq``, its message) or a change (``seq`` None; a live-only run's ``detail``)."""

    seq: int | None
    data: bytes = b""
    detail: Any = None


class RunFeed:
    """The latest events and changes of one run, as positions 0, 1, 2, ...."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.viewers = 0
        self.base = 0  # position of entries[0]
        self.entries: deque[Entry] = deque()
        self.size = 0  # bytes held
        self.ended = False  # the subscription ended (shutdown, or the hub dropped it)
        self._changed = trio.Event()
        self.cancel = trio.CancelScope()

    @property
    def end(self) -> int:
        """The position the next entry will take."""
        return self.base + len(self.entries)

    def take(self, batch: Batch) -> None:
        """Add a batch's rows (each made into its message here, once) and changes."""
        for row in batch.rows:
            data = message("event", event_from_row(row), id=row[1])
            self.entries.append(Entry(row[1], data))
            self.size += len(data)
        for run_id, _kind in batch.changes:
            if run_id == self.run_id:
                self.entries.append(Entry(None, detail=batch.details.get(run_id)))
        while len(self.entries) > RING_EVENTS or (self.size > RING_BYTES and len(self.entries) > 1):
            self.size -= len(self.entries.popleft().data)
            self.base += 1
        self._wake()

    def finish(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_beyond(self, position: int, deadline: float) -> None:
        """Return once an entry at ``position`` exists, the feed ended, or at ``deadline``."""
        if self.end > position or self.ended:
            return
        with trio.move_on_at(deadline):
            await self._changed.wait()

    def since(self, position: int) -> tuple[int, list[Entry]]:
        """(the position of the first entry returned, the entries from ``position`` on).

        A position the ring has let go of gives the oldest entries still held.
        """
        start = max(position, self.base)
        entries = self.entries
        if start == self.base:
            return start, list(entries)
        return start, [entries[i] for i in range(start - self.base, len(entries))]


class RunFeeds:
    """The feeds of the runs being watched; a feed lives while it has viewers."""

    def __init__(self, live: LiveSource, spawn: Spawn) -> None:
        self.live = live
        self.spawn = spawn  # starts a background task (the app's nursery)
        self.feeds: dict[str, RunFeed] = {}
        self.catchups = 0  # viewers sent to catch up, since the start

    @contextmanager
    def watch(self, run_id: str) -> Iterator[RunFeed]:
        """The run's feed, subscribed to the hub before this returns."""
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = RunFeed(run_id)
            subscription = self.live.subscribe(run_id=run_id)
            sub = subscription.__enter__()
            self.spawn(lambda: self._pump(feed, subscription, sub))
        feed.viewers += 1
        try:
            yield feed
        finally:
            feed.viewers -= 1
            if feed.viewers == 0:
                feed.cancel.cancel()
                if self.feeds.get(run_id) is feed:
                    del self.feeds[run_id]

    async def _pump(self, feed: RunFeed, subscription: Any, sub: Any) -> None:
        try:
            with feed.cancel:
                while True:
                    while (batch := await sub.receive()) is not None:
                        feed.take(batch)
                    if not sub.dropped:
                        break  # shutting down
                    # The hub let go of the feed (it fell behind): subscribe again.
                    # The rows in between are in the store; the streams see a gap
                    # in seqs and read them back.
                    log.warning("the live feed of run %s fell behind; it goes on", feed.run_id)
                    subscription.__exit__(None, None, None)
                    subscription = self.live.subscribe(run_id=feed.run_id)
                    sub = subscription.__enter__()
        except Exception:
            log.exception("the live feed of run %s failed; its streams end", feed.run_id)
        finally:
            subscription.__exit__(None, None, None)
            feed.finish()
            if self.feeds.get(feed.run_id) is feed:
                del self.feeds[feed.run_id]  # the next viewer starts a new one

    def statistics(self) -> dict[str, int]:
        return {
            "run_feeds": len(self.feeds),
            "run_viewers": sum(f.viewers for f in self.feeds.values()),
            "catchups": self.catchups,
        }
