"""Server-sent event streams: one run's events, and the live view of all runs.

A run stream joins its run's shared feed (``feeds.py``: one hub
subscription per watched run, each event made into its message once)
*before* it replays the backlog from the store, then forwards the feed's
events whose seq is above the last one sent: an event committed between
the two is neither lost nor sent twice. Whatever the hub does not carry as
rows (the markers the daemon writes itself, a gap in seqs) is read back
from the store, which already holds it. A live-only run (not recorded)
cannot be read back once it has ended, so its end is taken from the detail
that came with its last change. A stream that reads slower than its run
writes is not dropped: it sends ``catchup`` and skips ahead.

The live view reads the shared board (``board.py``): run-level state,
coalesced, the same bytes for every viewer.

Messages are built as bytes and yielded one chunk per page or wake-up;
nothing is yielded inside a cancel scope (async generators must not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import trio

from choo_web.board import LiveBoard
from choo_web.feeds import Entry, RunFeed, RunFeeds, message
from choo_web.sources import HistoryReader
from protocol.errors import Refusal

HEARTBEAT_S = 15.0  # a comment line this often keeps proxies and the browser's timer happy
FRAME_S = 0.02  # a run stream writes at most this often (50 times a second)
BACKLOG_PAGE = 1000
RETRY_MS = 2000
HEARTBEAT = b": hb\n\n"


class RunStream:
    """The events of one run after ``after``, then live ones, then ``end``.

    Live events come from the run's shared feed (``feeds.py``). A stream
    that fell behind the feed sends ``catchup`` (the seqs it skips) and
    goes on with the oldest events the feed still holds.
    """

    def __init__(self, reader: HistoryReader, feeds: RunFeeds, run_id: str, after: int) -> None:
        self.reader = reader
        self.feeds = feeds
        self.run_id = run_id
        self.last = after  # the highest seq sent (or skipped with a catchup message)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # One flat loop: a nested async generator left suspended when the
        # client goes away would only be closed by the garbage collector.
        with self.feeds.watch(self.run_id) as feed:
            position = feed.end  # what commits from now on; the store has the rest
            try:
                yield f"retry: {RETRY_MS}\n\n".encode()
                from_store = True
                heartbeat_at = sent_at = 0.0
                while True:
                    if from_store:
                        more = True
                        while more:
                            chunk, more = await self._page()
                            if chunk:
                                yield chunk
                        end = await self._end_if_over()
                        if end:
                            yield end
                            return
                        from_store = False
                        heartbeat_at = trio.current_time() + HEARTBEAT_S
                    await feed.wait_beyond(position, heartbeat_at)
                    # At most one write per FRAME_S: a busy run commits hundreds
                    # of times a second, and each write costs the daemon more
                    # than the bytes in it.
                    await trio.sleep_until(sent_at + FRAME_S)
                    start, entries = feed.since(position)
                    behind = start > position  # the feed let go of entries not sent
                    position = start + len(entries)
                    if not entries:
                        if feed.ended:
                            return  # shutting down: the client resumes with Last-Event-ID
                        if trio.current_time() >= heartbeat_at:
                            yield HEARTBEAT
                            from_store = True  # also finds what no commit announced
                        continue
                    chunk, from_store, end = self._forward(entries, behind)
                    if behind and not end:
                        end = await self._end_after_gap()
                    if chunk or end:
                        yield chunk + end
                        if end:
                            return
                        sent_at = trio.current_time()
                        heartbeat_at = sent_at + HEARTBEAT_S
            except Refusal:
                # The run went away mid-stream: retention, or a live-only run
                # that ended (and was forgotten) while we read; then its end
                # is in the feed.
                end = self._held_end(feed)
                if end:
                    yield end

    def _forward(self, entries: Sequence[Entry], behind: bool) -> tuple[bytes, bool, bytes]:
        """(messages for the entries after the last seq sent, whether to read the store, "end").

        ``behind``: entries were skipped; the first seq above the last one
        sent opens with a ``catchup`` message naming the gap.
        """
        out: list[bytes] = []
        for entry in entries:
            seq = entry.seq
            if seq is None:
                end = self._end_of_live_only(entry)
                if end:
                    return b"".join(out), False, end
                return b"".join(out), True, b""  # markers the daemon writes are not rows
            if seq <= self.last:
                continue  # replayed already, or a duplicate the store ignored
            if seq != self.last + 1:
                if not behind:
                    return b"".join(out), True, b""  # a gap in commit order: the store has it
                out.append(catchup(self.last, seq))
                self.feeds.catchups += 1
            behind = False
            out.append(entry.data)
            self.last = seq
        return b"".join(out), False, b""

    def _end_of_live_only(self, entry: Entry) -> bytes:
        """ "end" for a live-only run that ended (its detail came with the change)."""
        detail = entry.detail
        if detail is None or detail["status"] == "running":
            return b""
        return message("end", detail)

    def _held_end(self, feed: RunFeed) -> bytes:
        """The rows and "end" of a live-only run that ended, from what the feed holds."""
        out: list[bytes] = []
        for entry in feed.since(0)[1]:
            if entry.seq is not None and entry.seq > self.last:
                out.append(entry.data)
                self.last = entry.seq
            elif entry.seq is None and (end := self._end_of_live_only(entry)):
                return b"".join(out) + end
        return b""

    async def _end_after_gap(self) -> bytes:
        """After skipping entries (which may have held the run's end): if the run is
        over, a last ``catchup`` up to its last seq, then "end"."""
        detail = await self.reader.run_detail(self.run_id)
        if detail["status"] == "running":
            return b""
        gap = catchup(self.last, detail["last_seq"] + 1) if detail["last_seq"] > self.last else b""
        self.last = max(self.last, detail["last_seq"])
        return gap + message("end", detail)

    async def _page(self) -> tuple[bytes, bool]:
        """The stored events after the last one sent, a page of them; and whether more follow."""
        page = await self.reader.run_events(
            self.run_id, type=None, unit=None, after=self.last, limit=BACKLOG_PAGE
        )
        events = page["events"]
        if events:
            self.last = events[-1]["seq"]
        chunk = b"".join(message("event", e, id=e["seq"]) for e in events)
        return chunk, page["next_after"] is not None

    async def _end_if_over(self) -> bytes:
        """If the run is over: what was committed with its completion, then "end"."""
        detail = await self.reader.run_detail(self.run_id)
        if detail["status"] == "running":
            return b""
        out: list[bytes] = []
        more = True
        while more:
            chunk, more = await self._page()
            out.append(chunk)
        out.append(message("end", detail))
        return b"".join(out)


def catchup(last: int, next_seq: int) -> bytes:
    """The ``catchup`` message: the events after ``last`` and before ``next_seq`` are not sent."""
    return message("catchup", {"after": last, "next": next_seq})


class LiveStream:
    """Runs starting, their state (coalesced) and their end, for every run or one repository's."""

    def __init__(self, board: LiveBoard, repo: str | None) -> None:
        self.board = board
        self.repo = repo

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with self.board.join() as board:
            yield f"retry: {RETRY_MS}\n\n".encode()
            position = -1  # before the log: the first message is "ready"
            heartbeat_at = trio.current_time() + HEARTBEAT_S
            while True:
                await board.seeded.wait()
                if board.closed:
                    return  # shutting down, or the history cannot be read: the client reconnects
                got = board.since(position, self.repo)
                if got is None:
                    position, chunk = board.ready(self.repo)
                else:
                    position, chunk = got
                if chunk:
                    heartbeat_at = trio.current_time() + HEARTBEAT_S
                    yield chunk
                elif trio.current_time() >= heartbeat_at:
                    heartbeat_at = trio.current_time() + HEARTBEAT_S
                    yield HEARTBEAT
                await board.wait_beyond(position, heartbeat_at)
