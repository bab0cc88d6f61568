"""What a run did in git, read from its events: ``run_git`` (``GET /api/history/runs/{run}/git``).

An isolated run (issue 13) records its git setting (``run.branch``), each
task's commits (``task.committed``), each unit's merge into the run branch
(``unit.merged``, ``unit.merge.conflict``), the baseline checks after it
(``unit.baseline.ok|fail``), where each unit worked (``unit.started`` and
``unit.failed`` carry ``worktree``) and how the run landed (``run.land``).
``fold_git`` arranges those events into one structure, the same for a
stored run (``run_git``, here) and a run served from memory
(``choo_daemon.liveonly``); a run that was not isolated gets the empty one.

A commit's ``attempt`` is the attempt number of ``/tasks`` (the run's
attempts of the task, across orchestrators), found as the roll-ups find it:
the attempt with the event's ``try`` begun last before the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import apsw
import orjson

from choo_daemon.store.errors import BadParameter, UnknownRun
from choo_daemon.store.reads import Row, resolve_run_id, served
from choo_daemon.store.rollups import INVOKE
from choo_web.eventdict import event_from_row
from protocol.events import BY_NAME, fold_units


def _known(name: str) -> str:
    """``name``, an event type of the catalogue (a KeyError at import if it is not)."""
    return BY_NAME[name].name


RUN_BRANCH: Final = _known("run.branch")
RUN_LAND: Final = _known("run.land")
COMMITTED: Final = _known("task.committed")
MERGED: Final = _known("unit.merged")
CONFLICT: Final = _known("unit.merge.conflict")
BASELINE_OK: Final = _known("unit.baseline.ok")
BASELINE_FAIL: Final = _known("unit.baseline.fail")
# The types that set a unit's status: which units failed or stopped (their worktrees are kept).
STATUS_TYPES: Final = tuple(t.name for t in BY_NAME.values() if t.unit_status is not None)
GIT_TYPES: Final = (RUN_BRANCH, RUN_LAND, COMMITTED, MERGED, CONFLICT, BASELINE_OK, BASELINE_FAIL)
# What fold_git reads: a stored run's query, and with the attempts' starts a run kept in memory.
READ_TYPES: Final = (*GIT_TYPES, *STATUS_TYPES)
MEMORY_TYPES: Final = frozenset({*READ_TYPES, INVOKE})
KEPT: Final = frozenset({"failed", "stopped"})  # a unit's worktree is kept when it ended so


@dataclass(frozen=True)
class Start:
    """An attempt's beginning: the ``task.claude.invoke`` that opened attempt ``attempt``."""

    unit: str
    task: int
    attempt: int
    try_: int | None
    seq: int


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _payload(event: Mapping[str, Any]) -> Mapping[str, Any]:
    payload = event.get("payload")
    return payload if isinstance(payload, Mapping) else {}


def empty_git(run_id: str) -> dict[str, Any]:
    """The structure of a run that recorded nothing of git (it was not isolated)."""
    return {
        "run_id": run_id,
        "branch": None,
        "base": None,
        "head_branch": None,
        "worktrees": None,
        "isolation": None,
        "dirty": [],
        "land": None,
        "commits": [],
        "merges": [],
        "conflicts": [],
        "baselines": [],
        "kept_worktrees": [],
    }


def starts_from_events(events: Iterable[Mapping[str, Any]]) -> list[Start]:
    """Each attempt's start, from the ``task.claude.invoke`` events (as rollups.py numbers them)."""
    starts: list[Start] = []
    counts: dict[tuple[str, int], int] = {}
    for event in sorted(events, key=lambda e: int(e["seq"])):
        unit, task = event.get("unit"), _int(event.get("task"))
        if event.get("type") != INVOKE or not isinstance(unit, str) or task is None:
            continue
        n = counts[unit, task] = counts.get((unit, task), 0) + 1
        starts.append(Start(unit, task, n, _int(_payload(event).get("attempt")), int(event["seq"])))
    return starts


def _attempt_of(
    starts: list[Start], unit: str, task: int, try_: int | None, seq: int
) -> int | None:
    """The attempt with try ``try_`` begun last before ``seq`` (any try, if none has it)."""
    mine = [s for s in starts if s.unit == unit and s.task == task and s.seq < seq]
    for match in (s for s in reversed(mine) if try_ is None or s.try_ == try_):
        return match.attempt
    return mine[-1].attempt if mine else None


def fold_git(
    run_id: str,
    events: Iterable[Mapping[str, Any]],
    run_status: str | None,
    starts: list[Start],
) -> dict[str, Any]:
    """The run's git structure from its events (those of GIT_TYPES and STATUS_TYPES, any order).

    ``starts``: the run's attempt starts, sorted by seq, to number each commit's attempt.
    """
    git = empty_git(run_id)
    ordered = sorted(events, key=lambda e: int(e["seq"]))
    worktree: dict[str, tuple[str, str | None]] = {}  # unit -> (path, branch), the latest
    for event in ordered:
        kind, payload = event.get("type"), _payload(event)
        unit = _str(event.get("unit"))
        where = {"unit": unit, "seq": event["seq"], "time": event.get("time")}
        if kind == RUN_BRANCH:
            for key in ("branch", "base", "head_branch", "worktrees", "isolation"):
                git[key] = _str(payload.get(key))
            git["dirty"] = _strs(payload.get("dirty"))
        elif kind == RUN_LAND:
            git["land"] = {
                "landed": payload.get("landed") is True,
                "branch": _str(payload.get("branch")),
                "into": _str(payload.get("into")),
                "sha": _str(payload.get("sha")),
                "reason": _str(payload.get("reason")),
                "command": _str(payload.get("command")),
                "seq": event["seq"],
                "time": event.get("time"),
            }
        elif kind == COMMITTED and unit is not None:
            git["commits"] += _commits(event, payload, starts)
        elif kind == MERGED:
            git["merges"].append({**where, **_branches(payload), "sha": _str(payload.get("sha"))})
        elif kind == CONFLICT:
            git["conflicts"].append(
                {**where, **_branches(payload), "files": _strs(payload.get("files"))}
            )
        elif kind in (BASELINE_OK, BASELINE_FAIL):
            git["baselines"].append(
                {
                    **where,
                    "ok": kind == BASELINE_OK,
                    "name": _str(payload.get("name")),
                    "command": _str(payload.get("command")),
                    "exit_code": _int(payload.get("exit_code")),
                    "duration_ms": _int(payload.get("duration_ms")),
                    "timed_out": payload.get("timed_out") is True,
                    "output_tail": _str(payload.get("output_tail")),
                }
            )
        path = _str(payload.get("worktree"))
        if unit is not None and path and kind in STATUS_TYPES:
            branch = _str(payload.get("branch")) or worktree.get(unit, (path, None))[1]
            worktree[unit] = (path, branch)
    status_events = [e for e in ordered if e.get("type") in STATUS_TYPES]
    for outcome in fold_units([], status_events, run_status):
        found = worktree.get(outcome["unit"])
        if outcome["status"] in KEPT and found is not None:
            git["kept_worktrees"].append(
                {
                    "unit": outcome["unit"],
                    "path": found[0],
                    "branch": found[1],
                    "status": outcome["status"],
                }
            )
    return git


def _branches(payload: Mapping[str, Any]) -> dict[str, str | None]:
    return {"branch": _str(payload.get("branch")), "into": _str(payload.get("into"))}


def _commits(
    event: Mapping[str, Any], payload: Mapping[str, Any], starts: list[Start]
) -> list[dict[str, Any]]:
    """One entry per commit of a ``task.committed`` event."""
    unit, task, seq = str(event["unit"]), _int(event.get("task")), int(event["seq"])
    try_ = _int(payload.get("attempt"))
    attempt = None if task is None else _attempt_of(starts, unit, task, try_, seq)
    head = {
        "unit": unit,
        "task": task,
        "attempt": attempt,
        "try": try_,
        "seq": seq,
        "time": event.get("time"),
    }
    listed = payload.get("commits")
    if not isinstance(listed, list):  # only the shas: the commits are not described
        listed = [{"sha": sha} for sha in _strs(payload.get("shas"))]
    found = []
    for commit in listed:
        if not isinstance(commit, Mapping) or _str(commit.get("sha")) is None:
            continue
        found.append(
            {
                **head,
                "sha": commit["sha"],
                "subject": _str(commit.get("subject")),
                "author": _str(commit.get("author")),
                "files": _strs(commit.get("files")),
                "insertions": _int(commit.get("insertions")),
                "deletions": _int(commit.get("deletions")),
            }
        )
    return found


def narrow(git: dict[str, Any], unit: str | None, task: int | None) -> dict[str, Any]:
    """``git`` with its per-unit lists cut to ``unit`` (and its commits to ``task``)."""
    if task is not None and unit is None:
        raise BadParameter("task", task, "given with unit (?unit=U&task=N)")
    if unit is None:
        return git
    cut = dict(git)
    for key in ("commits", "merges", "conflicts", "baselines", "kept_worktrees"):
        cut[key] = [
            item
            for item in git[key]
            if item["unit"] == unit and (key != "commits" or task is None or item["task"] == task)
        ]
    return cut


def git_from_events(
    run_id: str,
    events: list[dict[str, Any]],
    run_status: str | None,
    unit: str | None,
    task: int | None,
) -> dict[str, Any]:
    """``run_git`` for a run not stored: its events (MEMORY_TYPES) number the attempts too."""
    git = fold_git(run_id, events, run_status, starts_from_events(events))
    return narrow(git, unit, task)


@served
def run_git(
    conn: apsw.Connection, run: str, *, unit: str | None = None, task: int | None = None
) -> dict[str, Any]:
    """The git structure (``fold_git``) of the run ``run`` names, cut to ``unit``/``task``."""
    if task is not None and unit is None:
        raise BadParameter("task", task, "given with unit (?unit=U&task=N)")
    marks = ", ".join("?" * len(READ_TYPES))
    with conn:
        run_id = resolve_run_id(conn, run)
        found: Row | None = conn.execute(
            "SELECT status FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if found is None:  # cannot happen inside one transaction; for the type checker
            raise UnknownRun(run_id)
        status: str = found[0]
        rows: list[Row] = conn.execute(
            "SELECT run_id, seq, time, type, unit, task, pr, payload, error"
            f" FROM events INDEXED BY events_run_type_seq WHERE run_id = ? AND type IN ({marks})",
            (run_id, *READ_TYPES),
        ).fetchall()
        starts = [
            Start(u, t, a, try_, s)
            for u, t, a, try_, s in conn.execute(
                "SELECT unit, task, attempt, try, start_seq FROM task_attempts"
                " WHERE run_id = ? ORDER BY start_seq",
                (run_id,),
            )
        ]
    events = [event_from_row(row, orjson.loads) for row in rows]
    return narrow(fold_git(run_id, events, status, starts), unit, task)
