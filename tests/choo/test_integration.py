"""The full path: the installed ``choo``, a daemon it starts, a real SQLite file, fake agents.

``choo resume`` finds its run through the daemon's HTTP API, so the resume
tests cover that API's run list and run routes too.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from protocol.home import Home
from tests.choo.support import (
    History,
    Repo,
    assert_contiguous,
    make_repo,
    plan_md,
    run_choo,
    task_md,
    wait_until,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_LEVELS = [["config"], ["models", "storage"], ["api", "cli"], ["docs"]]
Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    root = tmp_path / "example"
    shutil.copytree(EXAMPLES, root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def originals(root: Path) -> dict[Path, str]:
    return {p: p.read_text() for p in sorted((root / "specs" / "tasks").rglob("0*.md"))}


def assert_all_complete(before: dict[Path, str]) -> None:
    for path, text in before.items():
        assert "status: pending" in text
        assert path.read_text() == text.replace("status: pending", "status: complete"), path


def started_after_dependencies(events: list[dict[str, Any]], graph: dict[str, Any]) -> None:
    seq_of = {(e["type"], e["unit"]): e["seq"] for e in events}
    for edge in graph["edges"]:
        assert seq_of[("unit.started", edge["from"])] > seq_of[("unit.completed", edge["to"])]


def test_the_example_plan_runs_with_a_daemon_it_starts(
    example: Path, home: Home, history: History
) -> None:
    before = originals(example)
    assert not home.socket.exists()
    result = run_choo("run", "specs/tasks", cwd=example)
    assert result.returncode == 0, result.stdout + result.stderr
    assert home.socket.exists(), "the daemon was started and still runs"

    run = history.only_run()
    assert run["status"] == "completed"
    assert run["repo_path"] == str(example.resolve())
    assert run["tasks_dir"] == str((example / "specs" / "tasks").resolve())
    assert (run["total_units"], run["completed_units"]) == (6, 6)
    assert (run["failed_units"], run["blocked_units"], run["dry_run"]) == (0, 0, 0)
    assert run["parallelism"] == 3, "from the example's .choo.yaml"
    assert f"run {run['id']}" in result.stdout

    events = history.events(run["id"])
    assert_contiguous(events)
    assert run["last_seq"] == run["event_count"] == len(events)
    assert events[0]["type"] == "orch.started"
    assert events[-1]["type"] == "orch.completed"
    types = Counter(e["type"] for e in events)
    assert types["unit.completed"] == 6
    assert types["task.completed"] == types["task.started"] == 10
    assert types["task.retry"] == types["task.validation.fail"] == 1
    assert "task.failed" not in types and "unit.failed" not in types
    (retry,) = [e for e in events if e["type"] == "task.retry"]
    (fail,) = [e for e in events if e["type"] == "task.validation.fail"]
    assert (retry["unit"], retry["task"]) == (fail["unit"], fail["task"]) == ("storage", 2)
    assert fail["seq"] < retry["seq"]

    graph = history.graph(run["id"])
    assert graph["levels"] == EXAMPLE_LEVELS
    assert {(e["from"], e["to"]) for e in graph["edges"]} == {
        ("models", "config"),
        ("storage", "config"),
        ("api", "models"),
        ("api", "storage"),
        ("cli", "models"),
        ("docs", "api"),
        ("docs", "cli"),
    }
    assert events[0]["payload"]["graph"] == graph
    started_after_dependencies(events, graph)
    assert_all_complete(before)


def test_the_example_plan_stopped_and_resumed_is_one_run(
    example: Path, home: Home, history: History, spawn: Spawn
) -> None:
    before = originals(example)
    proc = spawn("run", "specs/tasks", cwd=example)

    def some_tasks_completed() -> bool:
        try:
            return history.count_events("task.completed") >= 3
        except Exception:  # the daemon may not have created the database yet
            return False

    wait_until(some_tasks_completed, timeout=30, what="three task.completed events")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err

    run = history.only_run()
    assert run["status"] == "stopped"
    stop_events = history.events(run["id"])
    assert stop_events[-1]["type"] == "run.stopped"
    done_before = {(e["unit"], e["task"]) for e in stop_events if e["type"] == "task.completed"}
    assert 3 <= len(done_before) < 10
    left = [p for p, text in before.items() if "status: complete" not in p.read_text()]
    assert left, "the stop came before the end"

    result = run_choo("resume", cwd=example)
    assert result.returncode == 0, result.stdout + result.stderr

    run = history.only_run()
    assert run["status"] == "completed"
    assert run["resume_count"] == 1
    assert run["completed_units"] == 6
    events = history.events(run["id"])
    assert_contiguous(events)
    assert events[: len(stop_events)] == stop_events, "the history before the stop is kept"
    types = Counter(e["type"] for e in events)
    assert (types["run.stopped"], types["run.resumed"]) == (1, 1)
    assert events[len(stop_events)]["type"] == "run.resumed"
    assert events[-1]["type"] == "orch.completed"
    started = Counter((e["unit"], e["task"]) for e in events if e["type"] == "task.started")
    completed = Counter((e["unit"], e["task"]) for e in events if e["type"] == "task.completed")
    assert len(completed) == 10 and set(completed.values()) == {1}
    for key in done_before:
        assert started[key] == 1, f"{key} was completed before the stop and ran again"
    assert_all_complete(before)


def test_two_runs_in_two_repositories_at_once(
    tmp_path: Path, home: Home, history: History, spawn: Spawn
) -> None:
    def plan(prefix: str, chained: bool) -> dict[str, str]:
        return {
            f"{prefix}1/IMPLEMENTATION_PLAN.md": plan_md(),
            f"{prefix}1/01-t.md": task_md(1, f"{prefix} one", "AGENT:sleep=0.2"),
            f"{prefix}2/IMPLEMENTATION_PLAN.md": plan_md([f"{prefix}1"] if chained else None),
            f"{prefix}2/01-t.md": task_md(1, f"{prefix} two", "AGENT:sleep=0.2"),
        }

    alpha = make_repo(tmp_path / "alpha", plan("alpha", chained=True))
    beta = make_repo(tmp_path / "beta", plan("beta", chained=False))
    link = tmp_path / "beta-link"
    link.symlink_to(beta.root)  # run beta through a symlink: repo_path is resolved

    procs = [spawn("run", "specs/tasks", cwd=alpha.root), spawn("run", "specs/tasks", cwd=link)]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    urls = {re.search(r"live at (\S+)", out).group(1) for out, _ in outputs}  # type: ignore[union-attr]
    assert len(urls) == 1, "both runs used the same, single daemon"

    runs = {r["repo_path"]: r for r in history.runs()}
    assert set(runs) == {str(alpha.root.resolve()), str(beta.root.resolve())}
    for repo, prefix in ((alpha, "alpha"), (beta, "beta")):
        run = runs[str(repo.root.resolve())]
        assert run["status"] == "completed"
        assert run["completed_units"] == 2
        events = history.events(run["id"])
        assert_contiguous(events)
        assert {e["unit"] for e in events} - {None} == {f"{prefix}1", f"{prefix}2"}
        for relative in (f"{prefix}1/01-t.md", f"{prefix}2/01-t.md"):
            assert repo.status_of(relative) == "complete"


def test_resume_picks_the_latest_stopped_or_failed_run_of_this_repository(
    tmp_path: Path, home: Home, history: History
) -> None:
    failing = {
        "u/IMPLEMENTATION_PLAN.md": plan_md(),
        "u/01-done.md": task_md(1, "Done first"),
        "u/02-t.md": task_md(2, "Needs a fix", "AGENT:fail-unless=fixed.txt", depends_on=[1]),
    }
    mine: Repo = make_repo(tmp_path / "mine", failing, config={"attempts": 1})
    other: Repo = make_repo(tmp_path / "other", failing, config={"attempts": 1})
    assert run_choo("run", "specs/tasks", cwd=mine.root).returncode == 1
    # A later failed run, of another repository, must not be picked.
    assert run_choo("run", "specs/tasks", cwd=other.root).returncode == 1
    by_repo = {r["repo_path"]: r["id"] for r in history.runs()}
    mine_id, other_id = by_repo[str(mine.root.resolve())], by_repo[str(other.root.resolve())]

    (mine.root / "fixed.txt").touch()
    result = run_choo("resume", cwd=mine.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert mine_id in result.stdout
    assert history.run(mine_id)["status"] == "completed"
    assert history.run(other_id)["status"] == "failed"
    events = history.events(mine_id)
    assert_contiguous(events)
    started = Counter((e["unit"], e["task"]) for e in events if e["type"] == "task.started")
    assert started == {("u", 1): 1, ("u", 2): 2}
    assert mine.status_of("u/02-t.md") == "complete"
