"""choo.orchestrator.runstate: run.json, pending runs, the plan on a run branch, cleanup."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from choo.orchestrator import gitwork, runstate
from choo.orchestrator.discovery import PlanInvalid
from choo.orchestrator.gitwork import Repo
from choo.orchestrator.runstate import CleanupRefused, Removed
from protocol.home import Home
from tests.choo.gitrepo import (
    fake_run,
    git,
    init_repo,
    isolate_git_config,
    land,
    new_state,
    plan_repo,
)


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git_config(tmp_path, monkeypatch)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return plan_repo(tmp_path / "project")


def test_space_root_and_run_folder(home: Home, repo: Repo) -> None:
    root = runstate.space_root(home, repo)
    assert root.parent == home.root / "worktrees"
    assert root.name.startswith("project-") and len(root.name) == len("project-") + 8
    assert runstate.run_folder(home, repo, "r1") == root / "r1"
    assert runstate.unit_worktree(home, repo, "r1", "api") == root / "r1" / "api"
    assert runstate.merge_worktree(home, repo, "r1") == root / "r1" / "_merge"
    # Another clone of the same name: another folder.
    other = gitwork.find_repo(init_repo(repo.root.parent / "elsewhere" / "project"))
    assert other is not None and runstate.space_root(home, other) != root


def test_save_load_runs(home: Home, repo: Repo) -> None:
    assert runstate.load(home, repo, "r1") is None
    assert runstate.runs(home, repo) == []
    first = new_state(repo, "r1", units={"api": "working"})
    runstate.save(home, repo, first)
    second = new_state(repo, "r2", status="running")
    runstate.save(home, repo, second)
    assert runstate.load(home, repo, "r1") == first
    assert runstate.runs(home, repo) == [second, first]
    first.units["api"] = "merged"
    first.landed = True
    runstate.save(home, repo, first)
    assert runstate.load(home, repo, "r1") == first
    folder = runstate.run_folder(home, repo, "r1")
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]  # no temporary left
    assert json.loads((folder / "run.json").read_text())["units"] == {"api": "merged"}
    # A file that is not a run state is skipped, not fatal.
    (runstate.run_folder(home, repo, "r3")).mkdir()
    (runstate.run_folder(home, repo, "r3") / "run.json").write_text("{not json")
    assert runstate.load(home, repo, "r3") is None
    assert [s.run_id for s in runstate.runs(home, repo)] == ["r2", "r1"]


def test_has_landed(home: Home, repo: Repo) -> None:
    state = fake_run(home, repo, "r1")
    assert not runstate.has_landed(repo, state)
    land(repo, state)
    assert runstate.has_landed(repo, state)
    # Detached HEAD at start: HEAD is what counts.
    detached = fake_run(home, repo, "r2", head_branch=None)
    assert not runstate.has_landed(repo, detached)
    git(repo.root, "checkout", "-q", "--detach", detached.branch)
    assert runstate.has_landed(repo, detached)
    # A run that says it landed has, branch or not.
    gone = new_state(repo, "r3", branch="choo/r3", landed=True)
    assert runstate.has_landed(repo, gone)
    assert not runstate.has_landed(repo, new_state(repo, "r4", branch="choo/r4"))


def test_pending_run_is_the_newest_that_has_not_landed(home: Home, repo: Repo) -> None:
    tasks = repo.root / "tasks"
    assert runstate.pending_run(home, repo, tasks) is None
    first = fake_run(home, repo, "r1")
    assert runstate.pending_run(home, repo, tasks) == first
    # Another plan's run does not count.
    runstate.save(home, repo, new_state(repo, "r2", tasks_dir="other", branch="choo/r1"))
    assert runstate.pending_run(home, repo, tasks) == first
    land(repo, first)
    assert runstate.pending_run(home, repo, tasks) is None
    # A newer run whose branch is gone is skipped.
    runstate.save(home, repo, new_state(repo, "r5", branch="choo/r5"))
    assert runstate.pending_run(home, repo, tasks) is None


def test_plan_at_reads_the_branch_with_the_real_paths(home: Home, repo: Repo) -> None:
    state = fake_run(home, repo, "r1")
    tasks = repo.root / "tasks"
    plan = runstate.plan_at(repo, state.branch, tasks)
    assert plan.tasks_dir == tasks
    api = plan.units["api"]
    assert api.path == tasks / "api"
    assert [(t.number, t.status, t.path) for t in api.tasks] == [
        (1, "complete", tasks / "api" / "01-first.md"),
        (2, "pending", tasks / "api" / "02-second.md"),
    ]
    # The main tree still says pending.
    assert "status: pending" in (tasks / "api" / "01-first.md").read_text()


def test_plan_at_names_the_branch_when_it_lacks_the_plan(repo: Repo) -> None:
    (repo.root / "newtasks").mkdir()
    with pytest.raises(PlanInvalid) as caught:
        runstate.plan_at(repo, "main", repo.root / "newtasks")
    assert "not on main" in str(caught.value)
    assert str(repo.root / "newtasks") in str(caught.value)


def test_plan_at_problems_name_the_real_files(repo: Repo) -> None:
    bad = repo.root / "tasks" / "api" / "03-bad.md"
    bad.write_text("---\ntask: 3\nstatus: nonsense\nbackpressure: none\n---\n# Bad\n")
    gitwork.commit_all(repo.root, "a bad task", {})
    with pytest.raises(PlanInvalid) as caught:
        runstate.plan_at(repo, "main", repo.root / "tasks")
    assert [p.file for p in caught.value.problems] == [bad]
    assert "(on main)" in str(caught.value)


# --- cleanup --------------------------------------------------------------------


def kinds(removed: list[Removed]) -> list[tuple[str, str]]:
    return [(r.kind, Path(r.name).name if r.kind != "branch" else r.name) for r in removed]


def test_cleanup_removes_a_landed_run(home: Home, repo: Repo) -> None:
    state = fake_run(home, repo, "r1")
    land(repo, state)
    folder = runstate.run_folder(home, repo, "r1")
    planned = runstate.cleanup(home, repo, None, all=False, dry_run=True)
    assert kinds(planned) == [
        ("worktree", "api"),
        ("worktree", "_merge"),
        ("branch", "choo/r1-api"),
        ("branch", "choo/r1"),
        ("folder", "r1"),
    ]
    assert folder.exists() and gitwork.branch_exists(repo, "choo/r1")  # dry run: all there
    assert runstate.cleanup(home, repo, None, all=False, dry_run=False) == planned
    assert not folder.exists()
    assert not gitwork.branch_exists(repo, "choo/r1")
    assert not gitwork.branch_exists(repo, "choo/r1-api")
    assert git(repo.root, "worktree", "list").count("\n") == 0  # the main tree only
    assert gitwork.dirty_paths(repo.root) == []
    assert (repo.root / "api.py").exists()  # what landed stays
    assert runstate.cleanup(home, repo, None, all=False, dry_run=False) == []


def test_cleanup_keeps_runs_not_landed_or_running(home: Home, repo: Repo) -> None:
    fake_run(home, repo, "r1")  # completed, not landed
    fake_run(home, repo, "r2", status="running")
    assert runstate.cleanup(home, repo, None, all=False, dry_run=False) == []
    # --all: every finished run, its branch too; a running one stays.
    removed = runstate.cleanup(home, repo, None, all=True, dry_run=False)
    assert {r.run_id for r in removed} == {"r1"}
    assert ("branch", "choo/r1") in kinds(removed)
    assert not gitwork.branch_exists(repo, "choo/r1")
    assert gitwork.branch_exists(repo, "choo/r2")
    assert runstate.load(home, repo, "r2") is not None


def test_cleanup_of_one_run_keeps_a_branch_not_landed(home: Home, repo: Repo) -> None:
    fake_run(home, repo, "r1", status="failed")
    fake_run(home, repo, "r2", status="stopped")
    removed = runstate.cleanup(home, repo, "r1", all=False, dry_run=False)
    assert {r.run_id for r in removed} == {"r1"}
    assert ("branch", "choo/r1") not in kinds(removed)
    assert gitwork.branch_exists(repo, "choo/r1")  # the run's only copy of its work
    assert not gitwork.branch_exists(repo, "choo/r1-api")
    # Its state stays with its branch: status reads it, --all finds it.
    folder = runstate.run_folder(home, repo, "r1")
    assert [p.name for p in folder.iterdir()] == ["run.json"]
    assert ("folder", "r1") not in kinds(removed)
    assert runstate.pending_run(home, repo, repo.root / "tasks") is not None
    assert [s.run_id for s in runstate.kept_runs(home, repo)] == ["r2", "r1"]
    assert runstate.cleanup(home, repo, "r1", all=False, dry_run=False) == []
    gone = runstate.cleanup(home, repo, "r1", all=True, dry_run=False)
    assert kinds(gone) == [("branch", "choo/r1"), ("folder", "r1")]
    assert not folder.exists()
    assert [s.run_id for s in runstate.kept_runs(home, repo)] == ["r2"]


def test_cleanup_copes_with_a_worktree_deleted_by_hand(home: Home, repo: Repo) -> None:
    state = fake_run(home, repo, "r1")
    land(repo, state)
    subprocess.run(["rm", "-rf", str(runstate.unit_worktree(home, repo, "r1", "api"))], check=True)
    removed = runstate.cleanup(home, repo, None, all=False, dry_run=False)
    assert ("branch", "choo/r1-api") in kinds(removed)
    assert not gitwork.branch_exists(repo, "choo/r1-api")


def test_cleanup_refuses_an_unknown_run(home: Home, repo: Repo) -> None:
    fake_run(home, repo, "r1")
    with pytest.raises(CleanupRefused) as caught:
        runstate.cleanup(home, repo, "nope", all=False, dry_run=False)
    assert "no run nope" in str(caught.value) and "r1" in str(caught.value)
    assert caught.value.exit_code == 2


def test_cleanup_refuses_a_run_whose_lock_is_held(home: Home, repo: Repo) -> None:
    state = fake_run(home, repo, "r1", status="stopped")
    # A live process (this one) holds the plan's lock for r1, as planlock writes it.
    tasks_dir = (repo.root / "tasks").resolve()
    digest = hashlib.sha1(str(tasks_dir).encode()).hexdigest()[:16]
    lock = home.root / "locks" / f"{digest}.lock"
    lock.parent.mkdir(parents=True)
    record = {"run_id": "r1", "pid": os.getpid(), "started_at": "x", "tasks_dir": str(tasks_dir)}
    lock.write_text(json.dumps(record))
    land(repo, state)
    with pytest.raises(CleanupRefused, match="run r1 is running"):
        runstate.cleanup(home, repo, "r1", all=False, dry_run=False)
    assert runstate.cleanup(home, repo, None, all=True, dry_run=False) == []
    # Its holder gone (a pid that is dead): cleaned.
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lock.write_text(json.dumps({**record, "pid": int(dead.stdout)}))
    assert runstate.cleanup(home, repo, None, all=False, dry_run=False) != []
