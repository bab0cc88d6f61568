"""The live board: every running run's state, kept once for all ``/api/live`` viewers.

``/api/live`` used to send every event to every viewer, each viewer turning
each event into bytes itself: 50 viewers of 16 busy runs fell behind and
were dropped within seconds. The board holds one hub subscription while
anyone watches, folds each committed event into its run's state (status,
unit counts, last seq, the latest event), and writes to a shared log, as
SSE bytes made once: ``run.started`` and ``run.finished`` at once, and each
changed run's ``run.state`` at most once per ``COALESCE_S`` (the latest
state wins). A viewer holds a position in that log, nothing more; one that
falls behind the log's oldest entry gets a fresh ``ready`` in place of what
it missed. The first viewer's ``ready`` waits for the board to read the
running runs; later viewers' come from memory.

A run the daemon stops on its own (its client vanished) is announced by no
commit: the board looks for such runs every ``SWEEP_S``.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import islice
from typing import Any

import trio

from choo_web.feeds import Spawn, message
from choo_web.sources import Batch, EventRow, HistoryReader, LiveSource
from choo_web.units import unit_outcomes
from protocol.errors import Refusal
from protocol.events import BY_NAME, UNIT_STATUSES

log = logging.getLogger("choo.web")

COALESCE_S = 0.25  # at most one run.state per run this often
SWEEP_S = 15.0  # how often runs stopped without a commit are looked for
LOG_SIZE = 1024  # messages kept for viewers that are reading behind
READY_LIMIT = 500
MAX_IGNORED = 4096  # runs known not to be running (rows of a spool import, say)

# Changes after which a run is running: started, resumed, or its own events
# arrived after the daemon had marked it stopped (the marker is retracted).
RUN_STARTS = ("run.start", "run.resume", "run.reopened")


class RunState:
    """One running run as the board knows it: its summary, its units' statuses, its latest event."""

    def __init__(self, run: dict[str, Any], units: dict[str, str], seq: int) -> None:
        self.run = run  # RunSummary or RunDetail; event_count and last_seq kept current
        self.units = units
        self.seen = seq  # events up to this seq are counted
        self.latest: EventRow | None = None

    @property
    def repo(self) -> str:
        repo: str = self.run["repo_path"]
        return repo

    def apply(self, row: EventRow) -> bool:
        """Count ``row`` in; False if it is one counted already."""
        seq = row[1]
        if seq <= self.seen:
            return False
        self.seen = seq
        run = self.run
        run["event_count"] += 1
        run["last_seq"] = max(run["last_seq"], seq)
        unit = row[4]
        known = BY_NAME.get(row[3])
        if unit and known is not None and known.unit_status is not None:
            self.units[unit] = known.unit_status
        self.latest = row
        return True

    def state(self) -> dict[str, Any]:
        """The LiveState record (docs/API.md §5.3)."""
        run = self.run
        counts = Counter(self.units.values())
        total = max(int(run.get("total_units") or 0), len(self.units))
        units = {status: counts.get(status, 0) for status in UNIT_STATUSES}
        units["pending"] = max(0, total - sum(units.values()) + units["pending"])
        row = self.latest
        latest = None
        if row is not None:
            latest = {"seq": row[1], "time": row[2], "type": row[3], "unit": row[4], "task": row[5]}
        return {
            "run_id": run["id"],
            "status": run["status"],
            "event_count": run["event_count"],
            "last_seq": run["last_seq"],
            "units": {"total": total, **units},
            "last_event": latest,
        }

    def summary(self) -> dict[str, Any]:
        return {**self.run, "live": self.state()}


class Board:
    """One life of the board: from its first viewer to its last."""

    def __init__(self, reader: HistoryReader, live: LiveSource) -> None:
        self.reader = reader
        self.live = live
        self.viewers = 0
        self.runs: dict[str, RunState] = {}
        self.ignored: dict[str, None] = {}
        self.expected: dict[str, None] = {}  # runs whose start is being looked up
        self.waiting: dict[str, list[EventRow]] = {}  # rows of runs being looked up
        self.jobs: deque[Callable[[], Awaitable[None]]] = deque()
        self._job = trio.Event()
        self.dirty: dict[str, None] = {}
        self.entries: deque[tuple[str, bytes]] = deque()  # (repo_path, message)
        self.base = 0  # position of entries[0]
        self.seeded = trio.Event()
        self.closed = False  # no more messages: shutdown, or the history could not be read
        self.cancel = trio.CancelScope()
        self._changed = trio.Event()
        self._dirty = trio.Event()
        self._ready: dict[str | None, tuple[int, bytes]] = {}

    @property
    def end(self) -> int:
        return self.base + len(self.entries)

    # -- viewers ---------------------------------------------------------------

    def ready(self, repo: str | None) -> tuple[int, bytes]:
        """(the log position it stands for, the ``ready`` message for ``repo``)."""
        cached = self._ready.get(repo)
        if cached is not None and cached[0] == self.end:
            return cached
        runs = [s for s in self.runs.values() if repo is None or s.repo == repo]
        runs.sort(key=lambda s: (s.run["started_at"], s.run["id"]), reverse=True)
        made = (self.end, message("ready", {"runs": [s.summary() for s in runs[:READY_LIMIT]]}))
        if len(self._ready) > 16:
            self._ready.clear()
        self._ready[repo] = made
        return made

    def since(self, position: int, repo: str | None) -> tuple[int, bytes] | None:
        """(the new position, the messages for ``repo`` from ``position``); None if
        the log has let go of some of them (the viewer needs a new ``ready``)."""
        if position < self.base:
            return None
        held = islice(self.entries, position - self.base, None)
        picked = [data for run_repo, data in held if repo is None or run_repo == repo]
        return self.end, b"".join(picked)

    async def wait_beyond(self, position: int, deadline: float) -> None:
        if self.end > position or self.closed:
            return
        with trio.move_on_at(deadline):
            await self._changed.wait()

    # -- the board's own task --------------------------------------------------

    async def serve(self) -> None:
        try:
            with self.cancel:
                while await self._follow():
                    log.warning(
                        "the live board fell behind the hub; it reads the running runs again"
                    )
                    self._restart()
        except Refusal as refused:
            log.warning("the live board cannot read the history: %s", refused)
        except Exception:
            log.exception("the live board failed; its viewers reconnect")
        finally:
            self.closed = True
            self.seeded.set()
            self._wake()

    async def _follow(self) -> bool:
        """Follow the hub until it ends; True if it dropped the board (start over).

        Batches are folded as they come, never waiting for a read: what
        needs the store (a run starting or ending, one not followed yet,
        the first list of running runs) is a job, done in order by
        ``_jobs``; meanwhile the rows of runs not followed yet wait.
        """
        with self.live.subscribe() as sub:
            self._queue(self._seed)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._jobs)
                nursery.start_soon(self._publish_loop)
                nursery.start_soon(self._sweep_loop)
                while (batch := await sub.receive()) is not None:
                    self._take(batch)
                nursery.cancel_scope.cancel()
            return sub.dropped

    def _restart(self) -> None:
        """Forget everything; every viewer gets a new ``ready``."""
        self.runs.clear()
        self.dirty.clear()
        self.waiting.clear()
        self.jobs.clear()
        self.base = self.end + 1  # every viewer's position is now behind the log
        self.entries.clear()
        self._ready.clear()
        self.seeded = trio.Event()

    def _queue(self, job: Callable[[], Awaitable[None]]) -> None:
        self.jobs.append(job)
        self._job.set()

    async def _jobs(self) -> None:
        while True:
            while not self.jobs:
                await self._job.wait()
                self._job = trio.Event()
            job = self.jobs.popleft()
            try:
                await job()
            except Refusal as refused:  # the history cannot be read now: the next job may
                log.warning("the live board could not read the history: %s", refused)

    async def _seed(self) -> None:
        try:
            page = await self.reader.list_runs(
                repo=None, status="running", limit=READY_LIMIT, cursor=None
            )
            for run in [*page["runs"], *await self.reader.live_only_runs(repo=None)]:
                if run["id"] not in self.runs:
                    self._track(run, await self._outcomes(run))
        finally:
            self.seeded.set()

    async def _outcomes(self, run: dict[str, Any]) -> tuple[dict[str, str], int, EventRow | None]:
        """(units' statuses, up to which seq, the latest event) of ``run``, read back."""
        if not run["last_seq"]:
            return {}, 0, None
        folded = await unit_outcomes(self.reader, run["id"])
        seen = folded["seq"]
        page = await self.reader.run_events(
            run["id"], type=None, unit=None, after=seen - 1, limit=1
        )
        latest: EventRow | None = None
        if page["events"]:
            e = page["events"][0]
            latest = (
                run["id"],
                e["seq"],
                e["time"],
                e["type"],
                e["unit"],
                e["task"],
                e["pr"],
                None,
                None,
            )
        return {u["unit"]: u["status"] for u in folded["units"]}, seen, latest

    def _track(
        self, run: dict[str, Any], outcomes: tuple[dict[str, str], int, EventRow | None]
    ) -> RunState:
        """Follow ``run`` from its outcomes read back, then the rows that waited for it."""
        self.ignored.pop(run["id"], None)
        units, seen, latest = outcomes
        state = RunState({**run, "last_seq": max(seen, run["last_seq"])}, units, seen)
        state.latest = latest
        self.runs[run["id"]] = state
        self._apply_waiting(state)
        return state

    def _apply_waiting(self, state: RunState) -> None:
        applied = [state.apply(row) for row in self.waiting.pop(state.run["id"], ())]
        if any(applied):
            self.dirty[state.run["id"]] = None
            self._dirty.set()

    def _take(self, batch: Batch) -> None:
        for run_id, kind in batch.changes:
            if kind in RUN_STARTS:
                self.expected[run_id] = None
                self._queue(partial(self._started, run_id, batch.details.get(run_id)))
        for row in batch.rows:
            run_id = row[0]
            state = self.runs.get(run_id)
            if state is not None and run_id not in self.expected:
                if state.apply(row):
                    self.dirty[run_id] = None
                    self._dirty.set()
            elif run_id not in self.ignored:
                waiting = self.waiting.get(run_id)
                if waiting is None:
                    waiting = self.waiting[run_id] = []
                    if run_id not in self.expected and state is None:
                        self._queue(partial(self._discover, run_id))
                waiting.append(row)
        for run_id, kind in batch.changes:
            if kind == "run.complete":
                self._queue(partial(self._finished, run_id, batch.details.get(run_id)))

    async def _detail(self, run_id: str, known: Any = None) -> dict[str, Any] | None:
        if known is not None:
            return dict(known)
        try:
            detail: dict[str, Any] = await self.reader.run_detail(run_id)
        except Refusal:
            return None
        return detail

    async def _started(self, run_id: str, known: Any) -> None:
        try:
            detail = await self._detail(run_id, known)
            if detail is None or detail["status"] != "running":
                return
            self.dirty.pop(run_id, None)
            state = self._track(detail, await self._outcomes(detail))
            self._append(state.repo, message("run.started", {"run": state.summary()}))
        finally:
            self.expected.pop(run_id, None)
            self._settle(run_id)

    async def _discover(self, run_id: str) -> None:
        """A run not followed yet whose events arrive: followed if it is running."""
        try:
            if run_id in self.runs:
                return  # followed since (the first list of running runs had it)
            detail = await self._detail(run_id)
            if detail is None or detail["status"] != "running":
                if len(self.ignored) >= MAX_IGNORED:
                    del self.ignored[next(iter(self.ignored))]
                self.ignored[run_id] = None
                return
            state = self._track(detail, await self._outcomes(detail))
            self._append(state.repo, message("run.started", {"run": state.summary()}))
        finally:
            self._settle(run_id)

    def _settle(self, run_id: str) -> None:
        """After a look-up: rows that waited go to the run followed, or are let go."""
        if run_id in self.runs:
            self._apply_waiting(self.runs[run_id])
        if run_id not in self.expected:
            self.waiting.pop(run_id, None)

    async def _finished(self, run_id: str, known: Any = None) -> None:
        detail = await self._detail(run_id, known)
        if detail is not None and detail["status"] == "running":
            return  # resumed already
        state = self.runs.pop(run_id, None)
        if run_id in self.dirty:
            del self.dirty[run_id]
            if state is not None:  # its last state first
                self._append(state.repo, message("run.state", state.state()))
        if detail is not None:
            self._append(detail["repo_path"], message("run.finished", {"run": detail}))

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            for run_id in self.dirty:
                state = self.runs.get(run_id)
                if state is not None:
                    self.entries.append((state.repo, message("run.state", state.state())))
            self.dirty.clear()
            self._trim()
            self._wake()
            await trio.sleep(COALESCE_S)

    async def _sweep_loop(self) -> None:
        while True:
            await trio.sleep(SWEEP_S)
            if self.runs:
                self._queue(self._sweep)

    async def _sweep(self) -> None:
        page = await self.reader.list_runs(
            repo=None, status="running", limit=READY_LIMIT, cursor=None
        )
        live_only = await self.reader.live_only_runs(repo=None)
        running = {run["id"] for run in [*page["runs"], *live_only]}
        for run_id in [r for r in self.runs if r not in running]:
            await self._finished(run_id)

    def _append(self, repo: str, data: bytes) -> None:
        self.entries.append((repo, data))
        self._trim()
        self._wake()

    def _trim(self) -> None:
        while len(self.entries) > LOG_SIZE:
            self.entries.popleft()
            self.base += 1

    def _wake(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()


class LiveBoard:
    """Starts a board for the first viewer, and stops it after the last one."""

    def __init__(self, reader: HistoryReader, live: LiveSource, spawn: Spawn) -> None:
        self.reader = reader
        self.live = live
        self.spawn = spawn
        self.board: Board | None = None

    @contextmanager
    def join(self) -> Iterator[Board]:
        board = self.board
        if board is None or board.closed:
            board = self.board = Board(self.reader, self.live)
            self.spawn(board.serve)
        board.viewers += 1
        try:
            yield board
        finally:
            board.viewers -= 1
            if board.viewers == 0:
                board.cancel.cancel()
                if self.board is board:
                    self.board = None  # memory back: nothing is kept while nobody watches

    def statistics(self) -> dict[str, int]:
        board = self.board
        return {
            "live_viewers": board.viewers if board else 0,
            "live_runs": len(board.runs) if board else 0,
        }
