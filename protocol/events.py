"""The event catalogue: every event type a run records, and what each means.

One entry per type, and the one place to add a type. From it come the
orchestrator's check of what it emits, the recorder's payload allow-list,
the store's stop/resume markers, the web API's ``/api/event-types`` (the
browser keeps no list of its own) and a unit's status, folded from its
events by ``fold_units`` for ``choo history show`` and the web API alike.

Pure data and functions: no IO, importable by ``choo``, ``choo_daemon``
and ``choo_web``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict

UnitStatus = Literal["pending", "queued", "running", "completed", "failed", "blocked", "stopped"]

# In the order the UI lists them. "pending": no event about the unit yet;
# "stopped": it was queued or running when its run ended.
UNIT_STATUSES: Final[tuple[UnitStatus, ...]] = (
    "pending",
    "queued",
    "running",
    "completed",
    "failed",
    "blocked",
    "stopped",
)
# A unit in one of these is over: its event tells when and why.
UNIT_FINISHED: Final[frozenset[str]] = frozenset({"completed", "failed", "blocked"})


@dataclass(frozen=True, slots=True)
class EventType:
    """One event type.

    ``payload``: the fields that may be recorded (anything else an emitter
    adds stays in the process). ``unit_status``: the status this event gives
    its unit; "running" means a (re)start, whose payload may say how many
    tasks the unit has and how many are still pending. ``task_done``: one
    more of its unit's tasks is done. ``marker``: a stop or resume of the
    whole run, shown as a boundary. ``graph``: its payload carries the run's
    dependency graph (a fallback when none was stored).
    """

    name: str
    payload: frozenset[str]
    unit_status: UnitStatus | None = None
    task_done: bool = False
    marker: Literal["stop", "resume"] | None = None
    graph: bool = False
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        # The kind is the name's first part: what the UI's filter chips group by.
        object.__setattr__(self, "kind", self.name.partition(".")[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "payload": sorted(self.payload),
            "unit_status": self.unit_status,
            "task_done": self.task_done,
            "marker": self.marker,
            "graph": self.graph,
        }


def _keys(*names: str) -> frozenset[str]:
    return frozenset(names)


_OUTCOME = _keys("attempt", "exit_code", "duration_ms", "timed_out", "output_tail")
_ORCH_END = _keys("completed", "failed", "blocked", "duration_ms")

# Why a task attempt ended: task.completed, task.retry and task.failed carry
# one as ``stop_reason`` (README, "Why an attempt ended").
STOP_REASONS: Final[tuple[str, ...]] = (
    "passed",  # its validation passed on the first attempt
    "passed_after_retry",  # it passed on a later attempt
    "agent_failed",  # the agent exited non-zero or reported an error
    "agent_timeout",  # the agent ran past provider.timeout and was stopped
    "agent_max_turns",  # the agent stopped at its turn limit
    "validation_failed",  # the validation command exited non-zero
    "validation_timeout",  # the validation command ran past backpressure.timeout
    "cancelled",  # the run was stopped (SIGINT/SIGTERM) during the attempt
    "agent_not_started",  # the agent could not be started (missing program, argv, ...)
    "merge_conflict",  # the unit's branch did not merge into the run branch, even after
    # the agent's one attempt to resolve the conflict
)
# What a task attempt's agent reported, summed by the daemon into roll-ups.
TOKENS: Final[tuple[str, ...]] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
AGENT_USAGE: Final[tuple[str, ...]] = (*TOKENS, "cost_usd")


def empty_rollup(*, agent_ms: bool = False) -> dict[str, Any]:
    """A unit's roll-up (and with ``agent_ms``, a run's totals) when nothing was
    added up: no attempt, or a run that is not recorded."""
    zero: dict[str, Any] = {"attempts": 0, **dict.fromkeys(AGENT_USAGE, 0)}
    zero.update(cost_usd=0.0, cost_estimated=False, tool_calls=0)
    if agent_ms:
        zero["agent_ms"] = 0
    return zero


RUN_STOPPED: Final = "run.stopped"
RUN_RESUMED: Final = "run.resumed"

# The history's contract: these names are stored and shown as they are.
CATALOGUE: Final[tuple[EventType, ...]] = (
    EventType(
        "orch.started",
        _keys("units", "tasks", "parallelism", "graph", "provider", "tasks_dir"),
        graph=True,
    ),
    EventType("orch.completed", _ORCH_END),
    EventType("orch.failed", _ORCH_END | {"reason"}),
    EventType("orch.dryrun.started", _keys("units", "tasks", "parallelism", "graph", "tasks_dir")),
    EventType("orch.dryrun.completed", _keys("units", "tasks", "levels")),
    EventType("unit.queued", _keys("level", "tasks", "depends_on"), unit_status="queued"),
    # worktree/branch: where the unit works when the run is isolated (a git worktree).
    EventType(
        "unit.started",
        _keys("tasks", "pending", "provider", "worktree", "branch", "base"),
        unit_status="running",
    ),
    # In an isolated run a unit completes once its branch is merged into the run branch.
    EventType("unit.completed", _keys("tasks", "duration_ms"), unit_status="completed"),
    EventType(
        "unit.failed",
        _keys("failed_task", "reason", "duration_ms", "stop_reason", "worktree"),
        unit_status="failed",
    ),
    EventType("unit.blocked", _keys("blocked_by", "depends_on"), unit_status="blocked"),
    EventType("task.started", _keys("title", "max_attempts")),
    EventType(
        "task.claude.invoke", _keys("provider", "attempt", "program", "prompt_chars", "timeout_s")
    ),
    EventType("task.claude.done", _keys("provider") | _OUTCOME),
    EventType("task.backpressure", _keys("command", "attempt", "timeout_s")),
    EventType("task.validation.ok", _keys("command") | _OUTCOME),
    EventType("task.validation.fail", _keys("command") | _OUTCOME),
    # One per tool call of an attempt's agent, when its outcome is known (or
    # at the end of the stream for a call that got none).
    EventType(
        "task.agent.tool",
        _keys("attempt", "tool", "target", "call_id", "exit_code", "is_error"),
    ),
    # The close of an attempt's agent stream: who it was, what it did, what it cost.
    EventType(
        "task.agent.result",
        _keys(
            "provider",
            "attempt",
            "session_id",
            "model",
            "status",
            "is_error",
            "turns",
            "duration_ms",
            "api_duration_ms",
            *AGENT_USAGE,
            "cost_estimated",
            "tool_calls",
            "unparsed_lines",
        ),
    ),
    EventType(
        "task.completed",
        _keys("title", "attempts", "duration_ms", "stop_reason", "flaky"),
        task_done=True,
    ),
    EventType("task.retry", _keys("attempt", "next_attempt", "reason", "stop_reason")),
    EventType("task.failed", _keys("title", "attempts", "reason", "duration_ms", "stop_reason")),
    # What a passed task left in its unit's branch: the agent's own commits
    # (author "agent") and choo's commit of what was left (author "choo").
    # commits: [{sha, subject, author, files: [path], insertions, deletions}];
    # the totals are over all of them; files lists at most 200 paths.
    EventType(
        "task.committed",
        _keys("attempt", "commits", "shas", "files", "files_changed", "insertions", "deletions"),
    ),
    # A unit's branch merged into the run branch (sha: the merge commit).
    EventType("unit.merged", _keys("branch", "into", "sha")),
    # The merge stopped on conflicts; the unit's agent gets one attempt to resolve them.
    EventType("unit.merge.conflict", _keys("branch", "into", "files")),
    # A baseline check (config baseline_checks) run on the run branch after a merge.
    EventType("unit.baseline.ok", _keys("name", "command", *_OUTCOME - {"attempt"})),
    EventType("unit.baseline.fail", _keys("name", "command", *_OUTCOME - {"attempt"})),
    # An isolated run's git setting: the base commit (HEAD at the start), the
    # run branch, the branch checked out at the start, where the worktrees
    # live, and the main tree's uncommitted paths (not carried over).
    EventType(
        "run.branch",
        _keys("base", "branch", "head_branch", "worktrees", "dirty", "isolation"),
    ),
    # How a completed run's branch reached (or did not reach) the user's branch:
    # landed true with the new sha, or false with the reason and the command to run.
    EventType("run.land", _keys("landed", "branch", "into", "sha", "reason", "command")),
    EventType(RUN_STOPPED, _keys("reason", "signal"), marker="stop"),
    EventType(RUN_RESUMED, _keys("reason"), marker="resume"),
)

BY_NAME: Final[Mapping[str, EventType]] = {t.name: t for t in CATALOGUE}
EVENT_TYPES: Final[tuple[str, ...]] = tuple(BY_NAME)
KINDS: Final[tuple[str, ...]] = tuple(dict.fromkeys(t.kind for t in CATALOGUE))
# The types a unit's outcome is folded from.
UNIT_EVENT_TYPES: Final[tuple[str, ...]] = tuple(
    t.name for t in CATALOGUE if t.unit_status is not None or t.task_done
)
TASK_DONE_TYPES: Final[tuple[str, ...]] = tuple(t.name for t in CATALOGUE if t.task_done)
MARKER_TYPES: Final[tuple[str, ...]] = tuple(t.name for t in CATALOGUE if t.marker is not None)


def allowed_payload_keys(type: str) -> frozenset[str]:
    """The payload fields that may be recorded for ``type`` (none for an unknown type)."""
    known = BY_NAME.get(type)
    return known.payload if known is not None else frozenset()


def catalogue_dict() -> dict[str, Any]:
    """The catalogue as the web API serves it (``GET /api/event-types``)."""
    return {
        "types": [t.to_dict() for t in CATALOGUE],
        "kinds": list(KINDS),
        "unit_statuses": list(UNIT_STATUSES),
        "unit_finished": [s for s in UNIT_STATUSES if s in UNIT_FINISHED],
    }


# --- a unit's outcome ----------------------------------------------------------


class UnitOutcome(TypedDict):
    unit: str
    status: UnitStatus
    tasks: int
    done: int
    starts: int
    started_at: str | None
    finished_at: str | None
    duration_ms: int | None
    blocked_by: Any
    reason: str | None


@dataclass
class _Unit:
    outcome: UnitOutcome
    base_seq: int = 0  # done counts completions after this seq (a start resets it)
    completed: set[Any] = field(default_factory=set)  # tasks done since base_seq


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fold_units(
    nodes: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    run_status: str | None,
) -> list[UnitOutcome]:
    """Each unit's outcome, from the graph's ``nodes`` and the run's events.

    ``events`` are events as the API serves them (``seq``, ``type``,
    ``unit``, ``task``, ``time``, ``payload``, ``error``), in any order;
    those without a unit or with no bearing on one are ignored. The latest
    status event wins. A start's ``tasks``/``pending`` say how many tasks
    were done already; each task completed after it adds one. Once the run
    is over (``run_status`` not "running"), a unit still queued or running
    was interrupted: "stopped". Units come in the nodes' order, then in the
    order their first event came.
    """
    units: dict[str, _Unit] = {}

    def unit(unit_id: str, node: Mapping[str, Any] | None = None) -> _Unit:
        if unit_id not in units:
            node = node or {}
            units[unit_id] = _Unit(
                UnitOutcome(
                    unit=unit_id,
                    status="pending",
                    tasks=_int(node.get("tasks")) or 0,
                    done=_int(node.get("done")) or 0,
                    starts=0,
                    started_at=None,
                    finished_at=None,
                    duration_ms=None,
                    blocked_by=None,
                    reason=None,
                )
            )
        return units[unit_id]

    for node in nodes:
        if isinstance(node, Mapping) and node.get("id") is not None:
            unit(str(node["id"]), node)  # the daemon does not check a graph's shape
    last = 0
    for event in sorted(events, key=lambda e: int(e["seq"])):
        known = BY_NAME.get(str(event.get("type")))
        if int(event["seq"]) <= last or known is None or not event.get("unit"):
            continue  # the same event twice (pages overlapping), or not about a unit
        last = int(event["seq"])
        _apply(unit(str(event["unit"])), known, event)
    over = run_status is not None and run_status != "running"
    outcomes = []
    for u in units.values():
        o = u.outcome
        o["done"] += len(u.completed)
        if o["status"] == "completed":
            o["done"] = max(o["done"], o["tasks"])
        o["done"] = min(o["done"], o["tasks"] or o["done"])
        if over and o["status"] in ("queued", "running"):
            o["status"] = "stopped"  # the run is over: it was interrupted
        outcomes.append(o)
    return outcomes


def _apply(u: _Unit, known: EventType, event: Mapping[str, Any]) -> None:
    o = u.outcome
    payload = event.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    if known.task_done:
        if event.get("task") is not None:
            u.completed.add(event["task"])
        return
    if known.unit_status is None:
        return
    o["status"] = known.unit_status
    if known.unit_status == "running":
        o["starts"] += 1
        o["started_at"] = event.get("time")
        o["finished_at"] = o["duration_ms"] = o["reason"] = None
        tasks, pending = _int(payload.get("tasks")), _int(payload.get("pending"))
        if tasks is not None:
            o["tasks"] = tasks
            if pending is not None:
                o["done"] = max(0, tasks - pending)
                u.completed.clear()
    elif known.unit_status in UNIT_FINISHED:
        o["finished_at"] = event.get("time")
        o["duration_ms"] = payload.get("duration_ms")
        o["reason"] = payload.get("reason") or event.get("error")
        if known.unit_status == "blocked":
            o["blocked_by"] = payload.get("blocked_by")
