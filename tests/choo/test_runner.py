"""runner.execute in-process against a real daemon: every event type, stop, resume.

The fake agent stops a run the way a user would, by sending SIGTERM to the
orchestrator (here: this test process, whose signal receiver is active for
the whole time agents run).
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from choo.config import load
from choo.runner import RunOutcome, RunRequest, execute
from choo_daemon.daemon import Daemon
from protocol.events import BY_NAME, EVENT_TYPES
from protocol.home import Home
from tests.choo.support import History, Repo, assert_contiguous, make_repo, plan_md, task_md


async def execute_in(
    repo: Repo, home: Home, tasks_dir: Path | None = None, **options: Any
) -> tuple[RunOutcome, str]:
    console = Console(file=io.StringIO(), width=200)
    tasks_dir = tasks_dir or repo.tasks_dir
    request = RunRequest(tasks_dir=tasks_dir, config=load(repo.root), home=home, **options)
    outcome = await execute(request, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return outcome, output


PLAN = {
    # Validation fails once, then passes: validation.fail, retry, validation.ok.
    "good/IMPLEMENTATION_PLAN.md": plan_md(),
    # Its agent makes a tool call (task.agent.tool).
    "good/01-check.md": task_md(
        1, "Checked", "AGENT:write-second=good.txt AGENT:tool", backpressure="test -f good.txt"
    ),
    # Fails until fixed.txt exists: task.failed, unit.failed, and `child` blocked.
    "bad/IMPLEMENTATION_PLAN.md": plan_md(),
    "bad/01-broken.md": task_md(1, "Broken", "AGENT:fail-unless=fixed.txt"),
    # Stops the run (SIGTERM) until go.txt exists.
    "child/IMPLEMENTATION_PLAN.md": plan_md(["bad"]),
    "child/01-stopper.md": task_md(1, "Stopper", "AGENT:stop-run-unless=go.txt"),
    "child/02-after.md": task_md(2, "After", depends_on=[1]),
}


def segments(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A run's events split where it was resumed."""
    parts: list[list[dict[str, Any]]] = [[]]
    for event in events:
        if event["type"] == "run.resumed":
            parts.append([])
        parts[-1].append(event)
    return parts


ISOLATED_ONLY = {
    "task.committed",
    "unit.merged",
    "unit.merge.conflict",
    "unit.baseline.ok",
    "unit.baseline.fail",
    "run.branch",
    "run.land",
}
ISOLATED_KEYS = {"unit.started": {"worktree", "branch", "base"}, "unit.failed": {"worktree"}}


async def test_fail_resume_stop_resume_records_every_event_type_once(
    home: Home, daemon: Daemon, tmp_path: Path
) -> None:
    # The agent's plain text amid its stream-json is counted unparsed, not failed.
    config = {"attempts": 2, "provider.output": "claude-stream"}
    repo = make_repo(tmp_path / "repo", PLAN, config=config)
    history = History(home)

    first, output = await execute_in(repo, home)
    assert (first.status, first.exit_code) == ("failed", 1)
    run_id = first.run_id
    assert run_id is not None
    assert "blocked by bad" in output
    assert history.run(run_id)["status"] == "failed"
    assert repo.status_of("bad/01-broken.md") == "failed"
    assert repo.status_of("child/01-stopper.md") == "pending"

    (repo.root / "fixed.txt").touch()
    stopped, output = await execute_in(repo, home, resume={"id": run_id})
    assert (stopped.status, stopped.exit_code) == ("stopped", 143)
    assert stopped.run_id == run_id
    assert "stopped: SIGTERM received" in output
    assert history.run(run_id)["status"] == "stopped"

    (repo.root / "go.txt").touch()
    done, _ = await execute_in(repo, home, resume={"id": run_id})
    assert (done.status, done.exit_code) == ("completed", 0)

    dry, _ = await execute_in(repo, home, dry_run=True)
    assert dry.status == "completed"

    # One run row for the three segments, complete in the end.
    run = history.run(run_id)
    assert run["status"] == "completed"
    assert run["resume_count"] == 2
    assert run["completed_units"] == 3
    assert (run["failed_units"], run["blocked_units"]) == (0, 0)
    assert len(history.runs()) == 2

    events = history.events(run_id)
    assert_contiguous(events)
    dry_events = history.events(dry.run_id or "")
    assert [e["type"] for e in dry_events] == ["orch.dryrun.started", "orch.dryrun.completed"]
    # A run in the main tree (this repository has no commit) records every
    # type but those of git worktrees (tests/choo/test_isolation.py has them).
    assert {e["type"] for e in events + dry_events} == set(EVENT_TYPES) - ISOLATED_ONLY

    # Payloads: exactly the allowed fields (so none missing, none extra).
    for event in events + dry_events:
        if event["type"] == "run.resumed":
            assert event["payload"]["reason"] == "resumed with `choo resume`"
            continue
        allowed = BY_NAME[event["type"]].payload - ISOLATED_KEYS.get(event["type"], set())
        if event["type"] == "unit.failed":
            allowed -= {"stop_reason"}  # only a merge conflict gives a unit one
        assert set(event["payload"]) == allowed, event

    # Each thing happens once per segment: no event is emitted twice.
    parts = segments(events)
    assert [p[0]["type"] for p in parts] == ["orch.started", "run.resumed", "run.resumed"]
    assert [p[-1]["type"] for p in parts] == ["orch.failed", "run.stopped", "orch.completed"]
    for part in parts:
        keys = Counter((e["type"], e["unit"], e["task"], e["payload"].get("attempt")) for e in part)
        assert [k for k, n in keys.items() if n > 1] == []

    # Completed tasks are not run again; interrupted and failed ones are.
    started = Counter((e["unit"], e["task"]) for e in events if e["type"] == "task.started")
    assert started == {("good", 1): 1, ("bad", 1): 2, ("child", 1): 2, ("child", 2): 1}
    assert Counter((e["unit"], e["task"]) for e in repo.agent_starts()) == {
        ("good", 1): 2,  # its first validation failed
        ("bad", 1): 3,  # two attempts in the first run, one after the fix
        ("child", 1): 2,
        ("child", 2): 1,
    }

    def only(type: str, part: int) -> dict[str, Any]:
        (event,) = [e for e in parts[part] if e["type"] == type]
        return event

    assert only("unit.blocked", 0)["unit"] == "child"
    assert only("unit.blocked", 0)["payload"] == {"blocked_by": "bad", "depends_on": ["bad"]}
    assert only("orch.failed", 0)["payload"]["reason"] == "1 unit failed, 1 blocked"
    counts = only("orch.failed", 0)["payload"]
    assert (counts["completed"], counts["failed"], counts["blocked"]) == (1, 1, 1)
    assert only("task.failed", 0)["payload"]["reason"] == "agent exited with code 1"
    assert only("task.failed", 0)["payload"]["stop_reason"] == "agent_failed"
    # The stop cut the stopper's attempt short: it says so, and is done again on resume.
    assert only("task.failed", 1)["unit"] == "child"
    assert only("task.failed", 1)["payload"]["stop_reason"] == "cancelled"
    assert {e["payload"]["stop_reason"] for e in parts[2] if e["type"] == "task.completed"} == {
        "passed"
    }
    good = [e for e in parts[0] if e["type"] == "task.completed" and e["unit"] == "good"]
    assert (good[0]["payload"]["stop_reason"], good[0]["payload"]["flaky"]) == (
        "passed_after_retry",
        True,
    )
    assert only("task.validation.fail", 0)["unit"] == "good"
    retries = [e for e in parts[0] if e["type"] == "task.retry"]
    assert sorted(e["unit"] for e in retries) == ["bad", "good"]
    assert only("run.stopped", 1)["payload"] == {
        "reason": "SIGTERM received; workers stopped",
        "signal": "SIGTERM",
    }
    assert only("orch.completed", 2)["payload"]["completed"] == 3
    assert only("orch.started", 0)["payload"]["graph"]["levels"] == [["bad", "good"], ["child"]]

    # Every task file says complete; nothing else in them changed.
    for relative, text in PLAN.items():
        now = (repo.tasks_dir / relative).read_text()
        assert now == text.replace("status: pending", "status: complete"), relative


async def test_no_history_uses_the_daemon_but_records_nothing(
    home: Home, daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {"u/IMPLEMENTATION_PLAN.md": plan_md(), "u/01-task.md": task_md(1, "Quick")},
    )
    outcome, output = await execute_in(repo, home, record=False)
    assert (outcome.status, outcome.exit_code, outcome.run_id) == ("completed", 0, None)
    assert outcome.web_url == daemon.web_url
    assert History(home).runs() == []
    assert "warning" not in output
    assert repo.status_of("u/01-task.md") == "complete"


async def test_two_runs_whose_ids_collide_are_recorded_apart(
    home: Home, daemon: Daemon, tmp_path: Path, monkeypatch: Any
) -> None:
    """Two runs in one repository (of two plans: one plan runs once at a
    time) in the same second, the random part of their IDs forced to
    collide: the second gets run_exists and picks another ID; neither run's
    events, graph or end land on the other."""
    from choo import runner

    real = runner.new_run_id
    handed: list[str] = []

    def colliding() -> str:
        run_id = "run_20260120_143052_abcd" if len(handed) < 2 else real()
        handed.append(run_id)
        return run_id

    monkeypatch.setattr(runner, "new_run_id", colliding)
    repo = make_repo(
        tmp_path / "repo",
        {
            "one/IMPLEMENTATION_PLAN.md": plan_md(),
            "one/01-a.md": task_md(1, "A"),
            "../other/two/IMPLEMENTATION_PLAN.md": plan_md(),
            "../other/two/01-b.md": task_md(1, "B"),
        },
    )
    outcomes: list[RunOutcome] = []

    async def one_run(tasks_dir: Path) -> None:
        outcome, _ = await execute_in(repo, home, tasks_dir)
        outcomes.append(outcome)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one_run, repo.tasks_dir)
        nursery.start_soon(one_run, repo.root / "specs" / "other")
    ids = {o.run_id for o in outcomes}
    assert len(ids) == 2 and "run_20260120_143052_abcd" in ids
    assert len(handed) == 3  # the second run drew again
    history = History(home)
    for run_id in ids:
        assert run_id is not None
        run = history.run(run_id)
        assert (run["status"], run["total_units"], run["completed_units"]) == ("completed", 1, 1)
        events = history.events(run_id)
        assert_contiguous(events)
        assert [e["type"] for e in events].count("orch.started") == 1
        assert len({e["unit"] for e in events if e["unit"]}) == 1
