"""Runs written into a running daemon through its socket, as an orchestrator
writes them: for tests of what ``choo history`` reads back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from choo.client import open_daemon_client
from choo_daemon.store import iso_utc
from protocol.home import Home


def ago(days: float = 0, seconds: float = 0) -> str:
    return iso_utc(datetime.now(UTC) - timedelta(days=days, seconds=seconds))


def later(iso: str, seconds: float) -> str:
    return iso_utc(datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(seconds=seconds))


# An event to send: (type, unit, task, payload, error).
Ev = tuple[str, str | None, int | None, dict[str, Any] | None, str | None]


def unit_events(unit: str, outcome: str = "completed", tasks: int = 1) -> list[Ev]:
    """What the orchestrator records for one unit that runs to ``outcome``."""
    events: list[Ev] = [
        ("unit.queued", unit, None, {"level": 0, "tasks": tasks, "depends_on": []}, None),
        ("unit.started", unit, None, {"tasks": tasks, "pending": tasks}, None),
    ]
    for task in range(1, tasks + 1):
        events.append(("task.started", unit, task, {"title": f"Task {task}"}, None))
        if outcome == "failed" and task == tasks:
            events.append(("task.failed", unit, task, {"reason": "it broke"}, "exit code 1"))
        else:
            events.append(("task.completed", unit, task, {"attempts": 1, "duration_ms": 5}, None))
    if outcome == "failed":
        events.append(("unit.failed", unit, None, {"reason": f"task {tasks} failed"}, None))
    else:
        events.append(("unit.completed", unit, None, {"tasks": tasks, "duration_ms": 1500}, None))
    return events


@dataclass
class Phase:
    """One stretch of a run: its events, then how it ended (None: still running)."""

    events: list[Ev]
    status: str | None = "completed"
    units: tuple[int, int, int] = (0, 0, 0)  # completed, failed, blocked
    resume_reason: str | None = None  # set: this phase starts with `choo resume`


@dataclass
class SeedRun:
    id: str
    repo: str
    started_at: str = field(default_factory=ago)
    phases: list[Phase] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    dry_run: bool = False
    parallelism: int = 2


def seed(home: Home, *runs: SeedRun) -> None:
    trio.run(_seed, home, runs)


async def _seed(home: Home, runs: tuple[SeedRun, ...]) -> None:
    for run in runs:
        for n, phase in enumerate(run.phases):
            # Each phase on its own connection, as `choo run` and `choo resume` are.
            async with open_daemon_client(home, name="seed") as client:
                if n == 0:
                    await _start(client, run)
                    seq = 0
                else:
                    seq = await client.append_resume_marker(
                        run.id, time=later(run.started_at, 60 * n), reason=phase.resume_reason
                    )
                for type_, unit, task, payload, error in phase.events:
                    seq += 1
                    client.send_event(
                        run.id,
                        seq,
                        type_,
                        time=later(run.started_at, 60 * n + seq / 1000),
                        unit=unit,
                        task=task,
                        payload=payload,
                        error=error,
                    )
                if phase.status is None:
                    await client.wait_acked(run.id)
                    continue
                done, failed, blocked = phase.units
                await client.complete_run(
                    run.id,
                    status=phase.status,
                    completed_at=later(run.started_at, 60 * n + 30),
                    completed_units=done,
                    failed_units=failed,
                    blocked_units=blocked,
                )


async def _start(client: Any, run: SeedRun) -> None:
    await client.start_run(
        run.id,
        repo_path=run.repo,
        started_at=run.started_at,
        parallelism=run.parallelism,
        total_units=len(run.units),
        tasks_dir=f"{run.repo}/specs/tasks",
        dry_run=run.dry_run,
    )
    nodes = [{"id": u, "tasks": 1, "done": 0, "depends_on": []} for u in run.units]
    await client.graph(run.id, nodes, [], [list(run.units)] if run.units else [])


def simple_run(run_id: str, repo: str, *, status: str = "completed", **kw: Any) -> SeedRun:
    """A one-unit run that ended with ``status``."""
    outcome = "failed" if status == "failed" else "completed"
    counts = (0, 1, 0) if status == "failed" else (1, 0, 0)
    phase = Phase(unit_events("only", outcome), status=status, units=counts)
    return SeedRun(run_id, repo, phases=[phase], units=["only"], **kw)
