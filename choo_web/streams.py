"""Server-sent event streams: one run's events, and the live view of all runs.

A run stream subscribes to the hub *before* it replays the backlog from the
store, then forwards live rows whose seq is above the last one sent: an
event committed between the two is neither lost nor sent twice. Whatever
the hub does not carry as rows (the markers the daemon writes itself, a
gap in seqs) is read back from the store, which already holds it. A
live-only run (not recorded) cannot be read back once it has ended, so its
end is taken from the detail its last batch carries.

Messages are built as bytes and yielded one chunk per page or commit;
nothing is yielded inside a cancel scope (async generators must not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

from choo_web.eventdict import event_from_row
from choo_web.jsonio import dumps
from choo_web.sources import Batch, EventRow, HistoryReader, LiveSource, Subscription
from protocol.errors import Refusal

HEARTBEAT_S = 15.0  # a comment line this often keeps proxies and the browser's timer happy
BACKLOG_PAGE = 1000
RETRY_MS = 2000
HEARTBEAT = b": hb\n\n"

# Changes after which a run is running: started, resumed, or its own events
# arrived after the daemon had marked it stopped (the marker is retracted).
RUN_STARTS = ("run.start", "run.resume", "run.reopened")
MAX_TRACKED_RUNS = 4096


def message(event: str, data: Any, id: int | None = None) -> bytes:
    head = f"id: {id}\nevent: {event}\n" if id is not None else f"event: {event}\n"
    return head.encode() + b"data: " + dumps(data) + b"\n\n"


async def _next_batch(sub: Subscription, deadline: float) -> tuple[Batch | None, bool]:
    """(batch or None if the subscription ended, whether the deadline passed first)."""
    with trio.move_on_at(deadline):
        return await sub.receive(), False
    return None, True


class RunStream:
    """The events of one run after ``after``, then live ones, then ``end``."""

    def __init__(self, reader: HistoryReader, live: LiveSource, run_id: str, after: int) -> None:
        self.reader = reader
        self.live = live
        self.run_id = run_id
        self.last = after  # the highest seq sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # One flat loop: a nested async generator left suspended when the
        # client goes away would only be closed by the garbage collector.
        with self.live.subscribe(run_id=self.run_id) as sub:
            try:
                yield f"retry: {RETRY_MS}\n\n".encode()
                catch_up = True
                heartbeat_at = 0.0
                while True:
                    if catch_up:
                        more = True
                        while more:
                            chunk, more = await self._page()
                            if chunk:
                                yield chunk
                        end = await self._end_if_over()
                        if end:
                            yield end
                            return
                        catch_up = False
                        heartbeat_at = trio.current_time() + HEARTBEAT_S
                    batch, idle = await _next_batch(sub, heartbeat_at)
                    if idle:
                        yield HEARTBEAT
                        catch_up = True  # also finds what no commit announced
                    elif batch is None:
                        return  # dropped or shutting down: the client resumes with Last-Event-ID
                    elif batch.changes:
                        end = self._end_from(batch)
                        if end:
                            yield end
                            return
                        catch_up = True  # markers the daemon writes are not rows
                    else:
                        chunk, catch_up = self._forward(batch.rows)
                        if chunk:
                            yield chunk
                            heartbeat_at = trio.current_time() + HEARTBEAT_S
            except Refusal:
                # The run went away mid-stream: retention, or a live-only run
                # that ended (and was forgotten) while we read; then its end
                # is waiting in the subscription.
                end = self._buffered_end(sub)
                if end:
                    yield end

    def _forward(self, rows: Sequence[EventRow]) -> tuple[bytes, bool]:
        """Messages for the rows that follow the last one sent; True at a gap in seqs."""
        out: list[bytes] = []
        for row in rows:
            seq = row[1]
            if seq <= self.last:
                continue  # replayed already, or a duplicate the store ignored
            if seq != self.last + 1:
                return b"".join(out), True
            out.append(message("event", event_from_row(row), id=seq))
            self.last = seq
        return b"".join(out), False

    def _end_from(self, batch: Batch) -> bytes:
        """For a live-only run that ended in ``batch``: its last rows, then "end"."""
        detail = batch.details.get(self.run_id)
        if detail is None or detail["status"] == "running":
            return b""
        chunk, _ = self._forward(batch.rows)
        return chunk + message("end", detail)

    def _buffered_end(self, sub: Subscription) -> bytes:
        """The rows and "end" of a live-only run that ended, from what ``sub`` holds."""
        out: list[bytes] = []
        while (batch := sub.receive_nowait()) is not None:
            for row in batch.rows:
                if row[1] > self.last:
                    out.append(message("event", event_from_row(row), id=row[1]))
                    self.last = row[1]
            detail = batch.details.get(self.run_id)
            if detail is not None and detail["status"] != "running":
                return b"".join(out) + message("end", detail)
        return b""

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


class LiveStream:
    """Runs starting, their events and their end, for every run or one repository's."""

    def __init__(self, reader: HistoryReader, live: LiveSource, repo: str | None) -> None:
        self.reader = reader
        self.live = live
        self.repo = repo
        self.last: dict[str, int] = {}  # highest seq sent (or in "ready") per running run

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with self.live.subscribe(repo=self.repo) as sub:
            try:
                yield f"retry: {RETRY_MS}\n\n".encode()
                yield await self._ready()
                heartbeat_at = trio.current_time() + HEARTBEAT_S
                while True:
                    batch, idle = await _next_batch(sub, heartbeat_at)
                    if batch is None and not idle:
                        return
                    if batch is None:
                        chunk = HEARTBEAT + await self._sweep()
                    else:
                        chunk = await self._messages(batch)
                    if chunk:
                        heartbeat_at = trio.current_time() + HEARTBEAT_S
                        yield chunk
            except Refusal:
                return

    async def _ready(self) -> bytes:
        """The runs running now, so that a client misses none that started before."""
        page = await self.reader.list_runs(repo=self.repo, status="running", limit=500, cursor=None)
        runs = [*page["runs"], *await self.reader.live_only_runs(repo=self.repo)]
        for run in runs:
            self.live.remember_repo(run["id"], run["repo_path"])
            self._sent(run["id"], run["last_seq"])
        return message("ready", {"runs": runs})

    async def _messages(self, batch: Batch) -> bytes:
        out: list[bytes] = []
        finished: list[str] = []
        for run_id, kind in batch.changes:
            if kind in RUN_STARTS:
                # Its events follow, all of them, even those its summary already counts.
                detail = await self._run_if_wanted(run_id, batch.details.get(run_id))
                if detail is not None:
                    if run_id not in self.last:
                        self._sent(run_id, 0)
                    out.append(message("run.started", {"run": detail}))
            elif kind == "run.complete":
                finished.append(run_id)
        for row in batch.rows:
            run_id, seq = row[0], row[1]
            if seq <= self.last.get(run_id, 0):
                continue  # a duplicate the store ignored, or covered by "ready"
            if self.repo is not None and not await self._wanted(run_id):
                continue
            self._sent(run_id, seq)
            out.append(message("event", {"run_id": run_id, "event": event_from_row(row)}))
        for run_id in finished:
            out.append(await self._finished(run_id, batch.details.get(run_id)))
        return b"".join(out)

    async def _finished(self, run_id: str, known: Any = None) -> bytes:
        """``run.finished`` if the run is over (and wanted); it is no longer tracked."""
        detail = await self._run_if_wanted(run_id, known)
        if detail is not None and detail["status"] == "running":
            return b""  # resumed already
        self.last.pop(run_id, None)
        return b"" if detail is None else message("run.finished", {"run": detail})

    async def _sweep(self) -> bytes:
        """Finish the runs that ended unannounced (stopped by the daemon itself)."""
        if not self.last:
            return b""
        page = await self.reader.list_runs(repo=self.repo, status="running", limit=500, cursor=None)
        live_only = await self.reader.live_only_runs(repo=self.repo)
        running = {run["id"] for run in [*page["runs"], *live_only]}
        gone = [run_id for run_id in self.last if run_id not in running]
        return b"".join([await self._finished(run_id) for run_id in gone])

    def _sent(self, run_id: str, seq: int) -> None:
        if run_id not in self.last and len(self.last) >= MAX_TRACKED_RUNS:
            del self.last[next(iter(self.last))]  # a run that never finished, long ago
        self.last[run_id] = seq

    async def _wanted(self, run_id: str) -> bool:
        repo = self.live.repo_of(run_id)
        if repo is None:
            return await self._run_if_wanted(run_id) is not None
        return repo == self.repo

    async def _run_if_wanted(self, run_id: str, known: Any = None) -> Any:
        """The run's detail (``known``, or read) if it passes the repository filter, else None."""
        try:
            detail = known if known is not None else await self.reader.run_detail(run_id)
        except Refusal:
            return None
        self.live.remember_repo(run_id, detail["repo_path"])
        if self.repo is not None and detail["repo_path"] != self.repo:
            return None
        return detail
