"""``choo status``: the units and tasks of a plan, with their status and
what each depends on (units by ID, tasks by number: ``#1``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from choo.orchestrator import gitwork, runstate
from choo.orchestrator.discovery import Plan, discover
from choo.orchestrator.graph import Graph
from choo.orchestrator.planfile import DEFAULT_MAX_BYTES
from choo.orchestrator.runstate import RunState
from choo.term import shown
from protocol.home import Home

_COLORS = {"complete": "green", "failed": "red", "in_progress": "yellow", "pending": "dim"}


def current_plan(
    home: Home, tasks_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[Plan, RunState | None]:
    """The plan in ``tasks_dir`` with its current statuses, and the run they come from.

    While an isolated run of this plan has not landed, its statuses are on its
    run branch, not in the folder: the plan is read from there (the run is
    returned then). Otherwise it is the folder's. No file over ``max_bytes``
    (``plan.max_file_bytes``) is read. Raises PlanInvalid.
    """
    repo = gitwork.find_repo(tasks_dir)
    pending = runstate.pending_run(home, repo, tasks_dir) if repo is not None else None
    if repo is None or pending is None:
        return discover(tasks_dir, max_bytes=max_bytes), None
    return runstate.plan_at(repo, pending.branch, tasks_dir, max_bytes=max_bytes), pending


def pending_note(run: RunState) -> str:
    return f"run {run.run_id} has not landed: statuses from branch {run.branch}"


def run_json(run: RunState) -> dict[str, Any]:
    return {"id": run.run_id, "branch": run.branch, "landed": False}


def unit_status(statuses: list[str]) -> str:
    if statuses and all(s == "complete" for s in statuses):
        return "complete"
    if any(s == "failed" for s in statuses):
        return "failed"
    if any(s in ("complete", "in_progress") for s in statuses):
        return "in_progress"
    return "pending"


def plan_status(plan: Plan, graph: Graph) -> dict[str, Any]:
    units = []
    for unit in plan.units.values():
        units.append(
            {
                "id": unit.id,
                "level": graph.level_of(unit.id),
                "depends_on": list(unit.depends_on),
                "status": unit_status([t.status for t in unit.tasks]),
                "tasks": [
                    {
                        "number": t.number,
                        "title": t.title,
                        "status": t.status,
                        "depends_on": list(t.depends_on),
                        "file": str(t.path),
                    }
                    for t in unit.tasks
                ],
            }
        )
    return {"tasks_dir": str(plan.tasks_dir), "units": units}


def status_table(plan: Plan, graph: Graph) -> Table:
    table = Table(title=shown(plan.tasks_dir), title_justify="left")
    table.add_column("level", justify="right")
    table.add_column("unit / task")
    table.add_column("status")
    table.add_column("depends on")
    for unit in sorted(plan.units.values(), key=lambda u: (graph.level_of(u.id), u.id)):
        status = unit_status([t.status for t in unit.tasks])
        done = sum(1 for t in unit.tasks if t.status == "complete")
        table.add_row(
            str(graph.level_of(unit.id)),
            f"[bold]{shown(unit.id)}[/] [dim]{done}/{len(unit.tasks)}[/]",
            f"[{_COLORS[status]}]{status}[/]",
            shown(", ".join(unit.depends_on)),
        )
        for task in unit.tasks:
            color = _COLORS.get(task.status, "white")
            table.add_row(
                "",
                f"  #{task.number} {shown(task.title)}",
                f"[{color}]{task.status}[/]",
                ", ".join(f"#{n}" for n in task.depends_on),
            )
    return table
