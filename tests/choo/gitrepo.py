"""Real git repositories for the tests of isolated runs: no user or system config leaks in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from choo.orchestrator import gitwork, runstate
from choo.orchestrator.gitwork import Repo
from choo.orchestrator.runstate import RunState
from protocol.home import Home

PLAN = "---\ndepends_on: []\n---\n# {unit}\n"
TASK = '---\ntask: {number}\nstatus: {status}\nbackpressure: "true"\n---\n# {title}\n\nDo it.\n'


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def isolate_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the repository's own config counts: no ~/.gitconfig, no /etc/gitconfig."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.delenv(f"GIT_{name}_NAME", raising=False)
        monkeypatch.delenv(f"GIT_{name}_EMAIL", raising=False)


def init_repo(path: Path, *, identity: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    if identity:
        git(path, "config", "user.email", "dev@example.com")
        git(path, "config", "user.name", "Dev")
    return path


def write_task(tasks: Path, unit: str, number: int, title: str, status: str = "pending") -> Path:
    folder = tasks / unit
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "IMPLEMENTATION_PLAN.md").write_text(PLAN.format(unit=unit))
    path = folder / f"{number:02d}-{title.lower().replace(' ', '-')}.md"
    path.write_text(TASK.format(number=number, status=status, title=title))
    return path


def plan_repo(path: Path) -> Repo:
    """A repository whose plan (tasks/api: #1 First, #2 Second) is committed on main."""
    root = init_repo(path)
    write_task(root / "tasks", "api", 1, "First")
    write_task(root / "tasks", "api", 2, "Second")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "plan")
    found = gitwork.find_repo(root)
    assert found is not None
    return found


def new_state(repo: Repo, run_id: str, **changes: object) -> RunState:
    base = gitwork.head_commit(repo)
    assert base is not None
    fields: dict[str, object] = {
        "run_id": run_id,
        "repo_root": str(repo.root),
        "tasks_dir": "tasks",
        "base": base,
        "branch": runstate.run_branch(run_id),
        "head_branch": "main",
        "started_at": f"2026-11-30T10:00:0{run_id[-1]}Z",
        "status": "completed",
    }
    return RunState(**{**fields, **changes})  # type: ignore[arg-type]


def fake_run(home: Home, repo: Repo, run_id: str, **changes: object) -> RunState:
    """What an isolated run leaves: its branch with _merge, a unit (api) merged into it."""
    state = new_state(repo, run_id, units={"api": "merged"}, **changes)
    merge_tree = runstate.merge_worktree(home, repo, run_id)
    gitwork.add_worktree(repo, merge_tree, state.branch, state.base)
    unit_tree = runstate.unit_worktree(home, repo, run_id, "api")
    gitwork.add_worktree(repo, unit_tree, runstate.unit_branch(run_id, "api"), state.branch)
    task = unit_tree / "tasks" / "api" / "01-first.md"
    task.write_text(task.read_text().replace("status: pending", "status: complete"))
    (unit_tree / "api.py").write_text("print('api')\n")
    (unit_tree / f"{run_id}.txt").write_text(run_id)
    gitwork.commit_all(unit_tree, "api #1: First", {"Choo-Run": run_id, "Choo-Attempt": "1"})
    merged = gitwork.merge(merge_tree, runstate.unit_branch(run_id, "api"), "merge api", {})
    assert isinstance(merged, str)
    runstate.save(home, repo, state)
    return state


def land(repo: Repo, state: RunState) -> None:
    assert gitwork.fast_forward(repo.root, "main", state.branch) is None
