"""Where a run's time went: its lanes, as ``GET /api/history/runs/{run}/lanes`` serves them.

One lane per unit: how long it waited (for its dependencies, then for a
free slot), when it ran, and a bar per task attempt (agent time, then
validation time); the run's stop/resume gaps; and its critical path, the
chain of units, through the dependency graph, that set the run's length
(``critical_path``; docs/API.md says it in full).

Everything is read in one transaction from what is already added up or
indexed: the attempts from the roll-ups (``task_attempts``, rollups.py),
the units' status events and the markers through the (run, type, seq)
index, the edges from the stored graph. The events themselves are not
scanned, so a run of 100k events costs what one of 100 does. Times are
milliseconds from the run's ``started_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import apsw

from choo_daemon.store.errors import UnknownRun
from choo_daemon.store.reads import Row, get_graph, get_run, resolve_run_id, served
from choo_daemon.store.records import Graph, Marker, RunDetail
from protocol.events import RUN_RESUMED, RUN_STOPPED
from protocol.times import parse_iso_utc

# The unit events a lane is drawn from.
UNIT_TYPES: Final = ("unit.queued", "unit.started", "unit.completed", "unit.failed", "unit.blocked")
_ENDS: Final = {"unit.completed": "completed", "unit.failed": "failed"}


class _Clock:
    """Milliseconds from the run's start, for the stored times of one run."""

    def __init__(self, started_at: str) -> None:
        self.t0 = parse_iso_utc(started_at)

    def ms(self, time: str | None) -> int | None:
        if time is None:
            return None
        try:
            return round((parse_iso_utc(time) - self.t0).total_seconds() * 1000)
        except ValueError:
            return None

    def since(self, moment: datetime) -> int:
        return round((moment - self.t0).total_seconds() * 1000)


@dataclass
class _Lane:
    """One unit's waits and runs, built by walking its events and the markers in seq order."""

    unit: str
    waits: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    status: str = "pending"
    wait: dict[str, Any] | None = None  # the wait open now
    run: dict[str, Any] | None = None  # the run open now

    def open_wait(self, at: int, ready: int | None = None) -> None:
        if self.wait is None:
            self.wait = {"start_ms": at, "ready_ms": ready, "end_ms": None}
            self.waits.append(self.wait)

    def close_wait(self, at: int) -> None:
        if self.wait is not None:
            self.wait["end_ms"] = at
            self.wait = None

    def close_run(self, at: int, status: str) -> None:
        if self.run is not None:
            self.run.update(end_ms=at, status=status)
            self.run = None

    def apply(self, kind: str, at: int, seq: int) -> None:
        if kind == "unit.queued":
            self.open_wait(at)
            if self.wait is not None and self.wait["ready_ms"] is None:
                self.wait["ready_ms"] = at
            self.status = "queued"
        elif kind == "unit.started":
            self.close_wait(at)
            self.close_run(at, "stopped")  # started again without an end: a lost one
            self.run = {"start_ms": at, "end_ms": None, "status": "running", "seq": seq}
            self.runs.append(self.run)
            self.status = "running"
        elif kind in _ENDS:
            self.close_run(at, _ENDS[kind])
            self.close_wait(at)
            self.status = _ENDS[kind]
        elif kind == "unit.blocked":
            self.close_wait(at)
            self.status = "blocked"

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "blocked")


@dataclass
class _Read:
    """What the lanes are laid out from, read in one transaction."""

    detail: RunDetail
    graph: Graph | None
    unit_rows: list[Row]  # (seq, time, type, unit) of the units' status events
    first_seqs: dict[tuple[str, int], int]  # (unit, task) -> its first task.started
    titles: dict[tuple[str, int], str | None]
    attempts: list[Row]  # task_attempts rows, as _bars reads them


def _read(conn: apsw.Connection, run: str) -> _Read:
    with conn:
        run_id = resolve_run_id(conn, run)
        detail = get_run(conn, run_id)
        if detail is None:  # cannot happen inside one transaction; for the type checker
            raise UnknownRun(run_id)
        marks = ", ".join("?" * len(UNIT_TYPES))
        read = _Read(
            detail,
            get_graph(conn, run_id),
            conn.execute(
                "SELECT seq, time, type, unit FROM events INDEXED BY events_run_type_seq"
                f" WHERE run_id = ? AND type IN ({marks}) AND unit IS NOT NULL ORDER BY seq",
                (run_id, *UNIT_TYPES),
            ).fetchall(),
            {
                (unit, task): seq
                for unit, task, seq in conn.execute(
                    "SELECT unit, task, min(seq) FROM events INDEXED BY events_run_type_seq"
                    " WHERE run_id = ? AND type = 'task.started' GROUP BY unit, task",
                    (run_id,),
                )
            },
            {
                (unit, task): title
                for unit, task, title in conn.execute(
                    "SELECT unit, task, title FROM tasks WHERE run_id = ?", (run_id,)
                )
            },
            conn.execute(
                "SELECT unit, task, attempt, start_seq, started_at, finished_at, stop_reason,"
                " agent_ms, validation_ms, validation_command FROM task_attempts"
                " WHERE run_id = ? ORDER BY unit, start_seq",
                (run_id,),
            ).fetchall(),
        )
    return read


@served
def run_lanes(conn: apsw.Connection, run: str) -> dict[str, Any]:
    """The lanes of the run ``run`` names (module docstring; docs/API.md, Lanes)."""
    read = _read(conn, run)
    detail = read.detail
    clock = _Clock(detail["started_at"])
    running = detail["status"] == "running"
    end = _end_ms(clock, detail, running)
    markers = detail["markers"]
    lanes = _walk(clock, _unit_order(read.graph), read.unit_rows, markers, end)
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for bar in _bars(clock, read.attempts, markers, end, read.first_seqs, read.titles):
        by_unit.setdefault(bar["unit"], []).append(bar)
        lanes.setdefault(bar["unit"], _Lane(bar["unit"]))
    path = critical_path(lanes, _edges(read.graph))
    gaps = _gaps(clock, markers)
    for step in path["steps"]:
        step["tasks"] = sorted({b["task"] for b in by_unit.get(step["unit"], [])})
        for b in by_unit.get(step["unit"], []):
            b["critical"] = True
    path["stopped_ms"] = _stopped_within(gaps, path["end_ms"], end)
    on_path = {step["unit"] for step in path["steps"]}
    return {
        "run_id": detail["id"],
        "run_status": detail["status"],
        "seq": detail["last_seq"],
        "started_at": detail["started_at"],
        "end_ms": end,
        "open": running,
        "gaps": gaps,
        "lanes": [
            {
                "unit": name,
                "status": lane.status,
                "critical": name in on_path,
                "waits": lane.waits,
                "runs": lane.runs,
                "bars": by_unit.get(name, []),
            }
            for name, lane in lanes.items()
        ],
        "critical_path": path,
    }


def _unit_order(graph: Graph | None) -> list[str]:
    """The units in the graph's node order (the daemon does not check a graph's shape)."""
    nodes: Any = graph["nodes"] if graph is not None else []
    return [
        str(n["id"])
        for n in (nodes if isinstance(nodes, list) else [])
        if isinstance(n, dict) and n.get("id") is not None
    ]


def _end_ms(clock: _Clock, detail: Any, running: bool) -> int:
    """Where the run's timeline ends: now while it runs, else when it ended."""
    if running:
        return max(0, clock.since(datetime.now(UTC)))
    ended = clock.ms(detail["completed_at"])
    if ended is None and detail["markers"]:
        ended = clock.ms(detail["markers"][-1]["time"])
    return max(0, ended or 0)


def _walk(
    clock: _Clock, order: list[str], rows: list[Row], markers: list[Marker], end: int
) -> dict[str, _Lane]:
    """Each unit's lane: its events and the run's stops and resumes, in seq order."""
    lanes: dict[str, _Lane] = {unit: _Lane(unit) for unit in order}
    for lane in lanes.values():
        lane.open_wait(0)  # planned at the start: waiting from there
    steps = sorted(
        [(seq, time, kind, unit) for seq, time, kind, unit in rows]
        + [(m["seq"], m["time"], m["type"], None) for m in markers],
        key=lambda step: int(step[0]),
    )
    for seq, time, kind, unit in steps:
        at = clock.ms(time)
        if at is None:
            continue
        if unit is None:
            _marker(lanes, kind, at)
            continue
        if unit not in lanes:
            lanes[unit] = _Lane(unit)
            lanes[unit].open_wait(0)
        lanes[unit].apply(kind, at, seq)
    for lane in lanes.values():
        lane.close_run(end, "running" if lane.status == "running" else "stopped")
        if lane.wait is not None:
            lane.wait["end_ms"] = end
            lane.wait["open"] = True
            lane.wait = None
    return lanes


def _marker(lanes: dict[str, _Lane], kind: str, at: int) -> None:
    """A stop ends every unit's run and wait; a resume has the unfinished ones wait again."""
    for lane in lanes.values():
        if kind == RUN_STOPPED:
            lane.close_run(at, "stopped")
            lane.close_wait(at)
            if lane.status in ("queued", "running"):
                lane.status = "stopped"
        elif kind == RUN_RESUMED and not lane.finished:
            lane.open_wait(at)


def _stopped_within(gaps: list[dict[str, Any]], upto: int | None, end: int) -> int:
    """How much of the run up to ``upto`` it spent stopped."""
    if upto is None:
        return 0
    total = 0
    for gap in gaps:
        start, stop = gap["start_ms"] or 0, gap["end_ms"] if gap["end_ms"] is not None else end
        total += max(0, min(stop, upto) - start)
    return total


def _gaps(clock: _Clock, markers: list[Marker]) -> list[dict[str, Any]]:
    """Each stop and the resume that ended it (none yet: ``end_ms`` null)."""
    gaps: list[dict[str, Any]] = []
    open_gap: dict[str, Any] | None = None
    for m in markers:
        if m["type"] == RUN_STOPPED and open_gap is None:
            open_gap = {
                "start_ms": clock.ms(m["time"]),
                "end_ms": None,
                "stop_seq": m["seq"],
                "resume_seq": None,
                "reason": m["reason"],
            }
            gaps.append(open_gap)
        elif m["type"] == RUN_RESUMED and open_gap is not None:
            open_gap.update(end_ms=clock.ms(m["time"]), resume_seq=m["seq"])
            open_gap = None
    return gaps


def _bars(
    clock: _Clock,
    rows: list[Row],
    markers: list[Marker],
    end: int,
    first_seqs: dict[tuple[str, int], int],
    titles: dict[tuple[str, int], str | None],
) -> list[dict[str, Any]]:
    """A bar per attempt: its agent segment, then its validation segment."""
    stops = [(m["seq"], clock.ms(m["time"])) for m in markers if m["type"] == RUN_STOPPED]
    bars = []
    for unit, task, attempt, seq, started, finished, reason, agent_ms, check_ms, command in rows:
        start = clock.ms(started)
        if start is None:
            continue
        stop = clock.ms(finished)
        ended = "finished"
        if stop is None:
            stopped_at = next((at for s, at in stops if s > seq and at is not None), None)
            stop, ended = (stopped_at, "stopped") if stopped_at is not None else (end, "open")
        stop = max(stop, start)
        agent_end, check_start = _segments(start, stop, agent_ms, check_ms, command, ended)
        bars.append(
            {
                "unit": unit,
                "task": task,
                "attempt": attempt,
                "title": titles.get((unit, task)),
                "seq": seq,
                "task_seq": first_seqs.get((unit, task), seq),
                "start_ms": start,
                "end_ms": stop,
                "agent_end_ms": agent_end,
                "validation_start_ms": check_start,
                "agent_ms": agent_ms,
                "validation_ms": check_ms,
                "stop_reason": reason,
                "ended": ended,
                "critical": False,
            }
        )
    return bars


def _segments(
    start: int,
    stop: int,
    agent_ms: int | None,
    check_ms: int | None,
    command: str | None,
    ended: str,
) -> tuple[int, int | None]:
    """(where the agent segment ends, where the validation segment starts or None).

    The agent ran from the attempt's start for ``agent_ms``; the validation
    ran for ``validation_ms`` up to the attempt's end. Not known yet: an
    attempt whose validation began (its command is known) and has no
    duration is validating since its agent ended; one with no agent time is
    all agent.
    """
    if agent_ms is None:
        agent_end = stop if check_ms is None else max(start, stop - check_ms)
    else:
        agent_end = min(stop, start + agent_ms)
    if check_ms is not None:
        return agent_end, max(agent_end, stop - check_ms)
    if command is not None and agent_ms is not None and ended != "finished":
        return agent_end, agent_end
    return agent_end, None


def _edges(graph: Graph | None) -> dict[str, list[str]]:
    """unit -> the units it depends on, from the stored graph's edges ({from, to})."""
    deps: dict[str, list[str]] = {}
    edges: Any = graph["edges"] if graph is not None else []
    for edge in edges if isinstance(edges, list) else []:
        if isinstance(edge, dict) and edge.get("from") is not None and edge.get("to") is not None:
            deps.setdefault(str(edge["from"]), []).append(str(edge["to"]))
    return deps


def critical_path(lanes: dict[str, _Lane], deps: dict[str, list[str]]) -> dict[str, Any]:
    """The chain of units that set the run's length (docs/API.md, "critical path").

    Its last unit is the one whose last run ended latest (the first such in
    lane order). Walking back, each unit's predecessor is, of the units it
    depends on that ran, the one whose last run ended latest: the one whose
    end let it start. The walk stops at a unit with no such dependency.
    ``duration_ms`` is from the run's start to the last unit's end.
    """
    spans = {
        name: (lane.runs[0]["start_ms"], lane.runs[-1]["end_ms"])
        for name, lane in lanes.items()
        if lane.runs
    }
    if not spans:
        return {"steps": [], "duration_ms": 0, "end_ms": None}
    order = list(lanes)
    last = max(spans, key=lambda name: (spans[name][1], -order.index(name)))
    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    unit: str | None = last
    while unit is not None and unit not in seen:
        seen.add(unit)
        ran = [d for d in deps.get(unit, []) if d in spans and d not in seen]
        before = max(ran, key=lambda d: (spans[d][1], -order.index(d)), default=None)
        start, stop = spans[unit]
        steps.append({"unit": unit, "start_ms": start, "end_ms": stop, "after": before})
        unit = before
    steps.reverse()
    stop = spans[last][1]
    return {"steps": steps, "duration_ms": stop, "end_ms": stop}
