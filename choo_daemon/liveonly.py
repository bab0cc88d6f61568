"""Runs the daemon shows live but never records: ``run.start`` with ``history: false``.

``choo run --no-history`` (and ``history.enabled: false``) still streams its
run to the daemon, so that the web UI's Live view can follow it; nothing of
it may reach the database. Such a run lives here, in the daemon's first
process only, and never goes near the writer: its summary, its graph, and
a buffer of its latest ``MAX_EVENTS`` events. Its requests are answered at
once and its events acked at once (there is nothing to make durable: the
ack only tells the client it may forget them). Its start, events and end
are published to the live hub like a stored run's commits, each batch with
the run's detail, since nothing can be read back once the run is gone.

A live-only run is forgotten when it completes (after its end is
published), or when its connection ends without ``run.complete``: then it
is published as ``stopped``. ``LiveOnlyReader`` serves these runs to the
web API, by their full id and only while they run; the history's lists
never include them. Roll-ups (totals, per-unit and per-task sums) are the
history's, kept by its writer: a run not recorded shows them empty (zero
totals, no tasks).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from choo_daemon import store
from choo_daemon.hub import LiveHub
from choo_daemon.reader import Reader
from choo_daemon.rows import EventRow, add_rows, may_hold_secrets
from choo_daemon.store import Col, gitreads
from choo_daemon.work import Sender
from choo_web.eventdict import event_from_row
from protocol import Message, ProtocolError, payload_json
from protocol.events import empty_rollup
from protocol.redact import redact
from protocol.times import is_iso_utc, parse_iso_utc

log = logging.getLogger("choo.daemon")

MAX_EVENTS = 10_000  # per run: the latest are kept, for a browser that opens it late
MAX_RUNS = 64  # live-only runs at once; each may hold MAX_EVENTS events

# The messages that name a run: handled here when they name a live-only run.
_ABOUT_A_RUN = frozenset({"event", "events", "run.graph", "run.complete", "run.resume"})
_MARKERS = (store.RUN_STOPPED, store.RUN_RESUMED)


class Refused(Exception):
    """A request refused with a reply (the connection goes on)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _seq(row: EventRow) -> int:
    return row[Col.SEQ]


@dataclass(eq=False)
class LiveRun:
    """One live-only run: what the web shows of it, and who speaks for it."""

    summary: dict[str, Any]  # the fields of store.RunSummary
    owner: Sender
    graph: store.Graph | None = None
    markers: list[store.Marker] = field(default_factory=list)
    rows: deque[EventRow] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))

    @property
    def id(self) -> str:
        run_id: str = self.summary["id"]
        return run_id

    def row_summary(self) -> dict[str, Any]:
        return {**self.summary, "history": False}

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary,
            "markers": list(self.markers),
            "has_graph": self.graph is not None,
            "totals": empty_rollup(agent_ms=True),  # not recorded: nothing added up
            "history": False,
        }

    def add(self, row: EventRow) -> bool:
        """Keep ``row`` in seq order; False if that seq is already here (or too old to keep)."""
        rows, seq = self.rows, row[Col.SEQ]
        if not rows or seq > rows[-1][Col.SEQ]:
            rows.append(row)  # the deque lets go of the oldest
        else:
            at = bisect_left(rows, seq, key=_seq)
            if at < len(rows) and rows[at][Col.SEQ] == seq:
                return False
            if len(rows) == rows.maxlen:
                if at == 0:
                    return False  # older than every event kept
                rows.popleft()
                at -= 1
            rows.insert(at, row)
        summary = self.summary
        summary["event_count"] += 1
        summary["last_seq"] = max(summary["last_seq"], seq)
        if row[Col.TYPE] in _MARKERS:
            self._marker(row)
        return True

    def _marker(self, row: EventRow) -> None:
        text = row[Col.PAYLOAD]
        payload = orjson.loads(text) if text is not None else None
        reason = payload.get("reason") if isinstance(payload, dict) else None
        self.markers.append(
            {"seq": row[Col.SEQ], "time": row[Col.TIME], "type": row[Col.TYPE], "reason": reason}
        )
        self.markers.sort(key=lambda m: m["seq"])
        if row[Col.TYPE] == store.RUN_RESUMED:
            self.summary["resume_count"] += 1

    def events_page(
        self,
        *,
        type: str | None,
        unit: str | None,
        after: int,
        limit: int,
        before: int | None = None,
        count: bool = False,
    ) -> dict[str, Any]:
        """Like store.run_events, over the events kept in memory."""
        store.check_events_page(type, after, before, limit)

        def wanted(row: EventRow) -> bool:
            if unit is not None and row[Col.UNIT] != unit:
                return False
            kind = row[Col.TYPE]
            return type is None or (kind.startswith(type) if type.endswith(".") else kind == type)

        # The runs kept in memory are small (the latest events only): a scan.
        matching = [row for row in self.rows if wanted(row)]
        inside = [
            row
            for row in matching
            if row[Col.SEQ] > after and (before is None or row[Col.SEQ] < before)
        ]
        chosen = inside[:limit] if before is None else inside[-limit:]
        later = bool(chosen) and matching[-1][Col.SEQ] > chosen[-1][Col.SEQ]
        earlier = bool(chosen) and matching[0][Col.SEQ] < chosen[0][Col.SEQ]
        events = [event_from_row(row) for row in chosen]
        total = len(matching) if count else None
        return {
            "events": events,
            "next_after": events[-1]["seq"] if later else None,
            "prev_before": events[0]["seq"] if earlier else None,
            "total": total,
            "total_exact": None if total is None else True,
        }

    def git(self, *, unit: str | None, task: int | None) -> dict[str, Any]:
        """Like store.run_git, over the events kept in memory."""
        kinds = gitreads.MEMORY_TYPES
        events = [event_from_row(row, orjson.loads) for row in self.rows if row[Col.TYPE] in kinds]
        return gitreads.git_from_events(self.id, events, self.summary["status"], unit, task)


class LiveOnly:
    """The live-only runs of this daemon, and the session side of them."""

    def __init__(self, hub: LiveHub, *, max_runs: int = MAX_RUNS) -> None:
        self.hub = hub
        self.max_runs = max_runs
        self._runs: dict[str, LiveRun] = {}

    # -- the sessions' side (trio thread) -------------------------------------

    def wants(self, msg: Message) -> bool:
        """Whether ``msg`` is about a live-only run (so that no writer may see it)."""
        kind = msg["t"]
        if kind == "run.start":
            return msg.get("history") is False
        return bool(self._runs) and kind in _ABOUT_A_RUN and msg["run"] in self._runs

    def take(self, session: Sender, msg: Message) -> None:
        """Apply a message ``wants`` took; raises ProtocolError when the connection must end."""
        kind = msg["t"]
        if kind == "event" or kind == "events":
            self._events(session, msg)
            return
        try:
            data = self._requests[kind](self, session, msg)
        except Refused as exc:
            session.send_nowait(
                {"t": "error", "req": msg["req"], "code": exc.code, "message": exc.message}
            )
            return
        session.send_nowait({"t": "ok", "req": msg["req"], "data": data})

    def disconnected(self, session: Sender, name: str) -> None:
        """``session`` ended: its unfinished live-only runs end as ``stopped``."""
        for run in [run for run in self._runs.values() if run.owner is session]:
            run.summary.update(
                status="stopped",
                completed_at=store.utc_now(),
                error=f"the orchestrator ({name}) disconnected without finishing the run",
            )
            self._ended(run)

    def _start(self, session: Sender, msg: Message) -> dict[str, Any]:
        run_id, repo = msg["run"], redact(msg["repo_path"])
        if not is_iso_utc(msg["started_at"]):
            exc = store.BadParameter(
                "started_at", msg["started_at"], "UTC ISO 8601 like 2026-01-20T14:30:52.123Z"
            )
            raise Refused("bad_field", str(exc))
        known = self._runs.get(run_id)
        if known is not None:
            if known.summary["repo_path"] != repo:
                raise Refused(
                    "run_exists", str(store.RunExists(run_id, known.summary["repo_path"], repo))
                )
            known.owner = session
            return {"run": run_id, "created": False}
        if len(self._runs) >= self.max_runs:
            raise Refused(
                "unavailable",
                f"the daemon already shows {self.max_runs} runs that are not recorded; "
                "try again once one of them ends",
            )
        tasks_dir = msg.get("tasks_dir")
        run = LiveRun(
            {
                "id": run_id,
                "repo_path": repo,
                "status": "running",
                "started_at": msg["started_at"],
                "completed_at": None,
                "duration_ms": None,
                "parallelism": msg["parallelism"],
                "total_units": msg["total_units"],
                "completed_units": 0,
                "failed_units": 0,
                "blocked_units": 0,
                "resume_count": 0,
                "dry_run": bool(msg.get("dry_run", False)),
                "tasks_dir": None if tasks_dir is None else redact(tasks_dir),
                "error": None,
                "event_count": 0,
                "last_seq": 0,
                "cost_usd": 0.0,
                "cost_estimated": False,
            },
            session,
        )
        self._runs[run_id] = run
        self.hub.remember_repo(run_id, repo)
        log.info("run %s: shown live, not recorded (history: false)", run_id)
        self._publish(run, [], "run.start")
        return {"run": run_id, "created": True}

    def _graph(self, session: Sender, msg: Message) -> dict[str, Any]:
        run = self._claim(session, msg)
        graph = {k: msg[k] for k in ("nodes", "edges", "levels")}
        try:
            payload_json(graph)
        except ProtocolError as exc:
            raise Refused(exc.code, exc.message.replace("payload", "graph")) from None
        run.graph = {
            "nodes": redact(msg["nodes"]),
            "edges": redact(msg["edges"]),
            "levels": redact(msg["levels"]),
        }
        self._publish(run, [], "run.graph")
        return {}

    def _complete(self, session: Sender, msg: Message) -> dict[str, Any]:
        run = self._claim(session, msg)
        error = msg.get("error")
        run.summary.update(
            status=msg["status"],
            completed_at=msg["completed_at"],
            completed_units=msg["completed_units"],
            failed_units=msg["failed_units"],
            blocked_units=msg["blocked_units"],
            error=None if error is None else redact(error),
        )
        self._ended(run)
        return {}

    def _resume(self, session: Sender, msg: Message) -> dict[str, Any]:
        raise Refused(
            "unknown_run",
            f"run {msg['run']!r} is shown live but not recorded (history: false); "
            "there is nothing to resume",
        )

    _requests: ClassVar[dict[str, Callable[[LiveOnly, Sender, Message], dict[str, Any]]]] = {
        "run.start": _start,
        "run.graph": _graph,
        "run.complete": _complete,
        "run.resume": _resume,
    }

    def _events(self, session: Sender, msg: Message) -> None:
        run = self._claim(session, msg)
        rows: list[EventRow] = []
        # Checked and scrubbed as a stored run's would be: BadField ends the connection.
        add_rows(rows, msg, clean=not may_hold_secrets(msg))
        fresh = [row for row in rows if run.add(row)]
        # Nothing to make durable: the client may forget these events now.
        session.send_nowait({"t": "ack", "run": run.id, "seq": max(map(_seq, rows))})
        if fresh:
            self.hub.publish_unrecorded(fresh, (), {})

    def _claim(self, session: Sender, msg: Message) -> LiveRun:
        run = self._runs[msg["run"]]
        run.owner = session  # whoever speaks for a run owns it, as with stored runs
        return run

    def _ended(self, run: LiveRun) -> None:
        summary = run.summary
        try:
            took = parse_iso_utc(summary["completed_at"]) - parse_iso_utc(summary["started_at"])
            summary["duration_ms"] = round(took.total_seconds() * 1000)
        except (ValueError, TypeError):
            summary["duration_ms"] = None
        self._publish(run, [], "run.complete")
        del self._runs[run.id]
        log.info("run %s (not recorded) ended: %s", run.id, summary["status"])

    def _publish(self, run: LiveRun, rows: list[EventRow], kind: str) -> None:
        self.hub.publish_unrecorded(rows, [(run.id, kind)], {run.id: run.detail()})

    # -- the web's side -------------------------------------------------------

    def get(self, run_id: str) -> LiveRun | None:
        return self._runs.get(run_id)

    def running(self, repo: str | None) -> list[dict[str, Any]]:
        """The live-only runs (of ``repo``), newest first, as run summaries."""
        runs = [r for r in self._runs.values() if repo is None or r.summary["repo_path"] == repo]
        runs.sort(key=lambda r: (r.summary["started_at"], r.id), reverse=True)
        return [r.row_summary() for r in runs]


class LiveOnlyReader:
    """The web API's reads: the history (``Reader``), and the live-only runs in memory.

    A live-only run is found by its full id only, while it runs; the reads
    below answer for it, every other read (the lists, ``list_runs`` and
    ``list_repos``, among them) is the history's alone.
    """

    def __init__(self, history: Reader, runs: LiveOnly) -> None:
        self.history = history
        self.runs = runs

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):  # not a read (copy, pickle): and no recursion on self.history
            raise AttributeError(name)
        return getattr(self.history, name)  # type: ignore[no-any-return]

    async def resolve_run_id(self, run: str) -> str:
        if self.runs.get(run) is not None:
            return run
        return await self.history.resolve_run_id(run)  # type: ignore[no-any-return]

    async def run_detail(self, run: str) -> Any:
        live = self.runs.get(run)
        return live.detail() if live is not None else await self.history.run_detail(run)

    async def run_events(
        self,
        run: str,
        *,
        type: str | None,
        unit: str | None,
        after: int,
        limit: int,
        before: int | None = None,
        count: bool = False,
    ) -> Any:
        live = self.runs.get(run)
        if live is None:
            return await self.history.run_events(
                run, type=type, unit=unit, after=after, limit=limit, before=before, count=count
            )
        return live.events_page(
            type=type, unit=unit, after=after, limit=limit, before=before, count=count
        )

    async def run_graph(self, run: str) -> Any:
        live = self.runs.get(run)
        if live is None:
            return await self.history.run_graph(run)
        if live.graph is None:
            raise store.NoGraph(run, "yet (it is not recorded, and has not sent one)")
        return live.graph

    async def run_unit_rollups(self, run: str) -> Any:
        if self.runs.get(run) is not None:
            return {}  # not recorded: no roll-ups (the module docstring)
        return await self.history.run_unit_rollups(run)

    async def run_tasks(self, run: str, *, unit: str | None, task: int | None) -> Any:
        if self.runs.get(run) is None:
            return await self.history.run_tasks(run, unit=unit, task=task)
        if task is not None and unit is None:
            raise store.BadParameter("task", task, "given with unit (?unit=U&task=N)")
        return {"run_id": run, "tasks": []}

    async def settled_stamp(self, run: str) -> Any:
        if self.runs.get(run) is not None:
            return None  # running (and never kept)
        return await self.history.settled_stamp(run)

    async def run_tasks_json(self, run: str, *, unit: str | None) -> bytes:
        if self.runs.get(run) is None:
            return await self.history.run_tasks_json(run, unit=unit)  # type: ignore[no-any-return]
        return orjson.dumps({"run_id": run, "tasks": []})

    async def run_lanes(self, run: str) -> Any:
        live = self.runs.get(run)
        if live is None:
            return await self.history.run_lanes(run)
        detail = live.detail()  # not recorded: no roll-ups to draw lanes from
        return {
            "run_id": run,
            "run_status": detail["status"],
            "seq": detail["last_seq"],
            "started_at": detail["started_at"],
            "end_ms": 0,
            "open": detail["status"] == "running",
            "gaps": [],
            "lanes": [],
            "critical_path": {"steps": [], "duration_ms": 0, "end_ms": None, "stopped_ms": 0},
        }

    async def run_task_sums(self, run: str) -> Any:
        if self.runs.get(run) is not None:
            return {"run_id": run, "tasks": []}  # not recorded: no roll-ups
        return await self.history.run_task_sums(run)

    async def run_git(self, run: str, *, unit: str | None, task: int | None) -> Any:
        live = self.runs.get(run)
        if live is None:
            return await self.history.run_git(run, unit=unit, task=task)
        return live.git(unit=unit, task=task)

    async def live_only_runs(self, *, repo: str | None) -> list[Any]:
        """The runs shown live but not recorded (``choo run --no-history``), running now."""
        return list(self.runs.running(repo))
