"""Reading a plan cannot hang or exhaust choo: a task or plan file that is a FIFO,
a link to ``/dev/zero`` or to a file outside the repository, or one over
``plan.max_file_bytes`` is a problem naming the file, for ``choo status``,
``choo run --dry-run`` and ``choo run`` alike; nothing runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from choo.orchestrator.discovery import PlanInvalid, discover
from choo.orchestrator.planfile import repository_of
from tests.choo.support import Repo, make_repo, plan_md, run_choo, task_md

GOOD = {
    "a/IMPLEMENTATION_PLAN.md": plan_md(),
    "a/01-good.md": task_md(1, "Good"),
}


def fifo(path: Path, tmp_path: Path) -> None:
    os.mkfifo(path)


def dev_zero(path: Path, tmp_path: Path) -> None:
    path.symlink_to("/dev/zero")


def outside(path: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.md"  # beside the repository, not in it
    secret.write_text(task_md(2, "Secret", "a private key"))
    path.symlink_to(secret)


def oversized(path: Path, tmp_path: Path) -> None:
    path.write_text(task_md(2, "Big", "x" * (1024 * 1024)))


CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "fifo": (fifo, "is a FIFO (named pipe), not a regular file"),
    "dev_zero": (dev_zero, "links to /dev/zero, outside the repository"),
    "outside": (outside, "secret.md, outside the repository"),
    "oversized": (oversized, "is 1.0 MiB: larger than plan.max_file_bytes (1,048,576 bytes)"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("which", ["02-bad.md", "IMPLEMENTATION_PLAN.md"])
def test_a_bad_file_is_a_problem_of_status_dry_run_and_run(
    case: str, which: str, tmp_path: Path
) -> None:
    make, says = CASES[case]
    repo = make_repo(tmp_path / "repo", {k: v for k, v in GOOD.items() if k != f"a/{which}"})
    bad = repo.tasks_dir / "a" / which
    make(bad, tmp_path)
    before = _snapshot(repo)
    for args in (["status"], ["run", "--dry-run"], ["run"]):
        result = run_choo(*args, cwd=repo.root, timeout=60)  # a hang fails here
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        problem = next(line for line in result.stderr.splitlines() if "/a/" in line)
        assert problem.startswith(f"  specs/tasks/a/{which}: "), (args, result.stderr)
        assert says in problem, (args, result.stderr)
    assert repo.agent_log() == []
    assert _snapshot(repo) == before


def _snapshot(repo: Repo) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo.tasks_dir)): p.read_bytes()
        for p in sorted(repo.tasks_dir.rglob("*.md"))
        if p.is_file() and not p.is_symlink()
    }


def test_the_size_cap_is_plan_max_file_bytes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", GOOD, config={"plan": {"max_file_bytes": 50}})
    result = run_choo("status", cwd=repo.root)
    assert result.returncode == 2
    assert "01-good.md: is 60 B: larger than plan.max_file_bytes (50 bytes)" in result.stderr
    assert "IMPLEMENTATION_PLAN.md: is" not in result.stderr  # 30 bytes: read
    zero = run_choo("status", cwd=repo.root, env={**os.environ, "CHOO_PLAN_MAX_FILE_BYTES": "0"})
    assert zero.returncode == 2
    assert "plan.max_file_bytes" in zero.stderr and "at least 1" in zero.stderr


def test_a_link_inside_the_repository_is_followed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", GOOD)
    shared = repo.root / "docs" / "task.md"
    shared.parent.mkdir()
    shared.write_text(task_md(2, "Shared", "AGENT:write=made.txt"))
    (repo.tasks_dir / "a" / "02-shared.md").symlink_to("../../../docs/task.md")
    result = run_choo("status", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert "#2 Shared" in result.stdout


def test_outside_git_the_repository_is_the_tasks_folders_parent(tmp_path: Path) -> None:
    project = tmp_path / "project"
    tasks = project / "tasks"
    (tasks / "a").mkdir(parents=True)
    (tasks / "a" / "IMPLEMENTATION_PLAN.md").write_text(plan_md())
    (project / "notes.md").write_text(task_md(1, "Notes"))
    (tasks / "a" / "01-notes.md").symlink_to(project / "notes.md")
    (tmp_path / "away.md").write_text(task_md(2, "Away"))
    assert repository_of(tasks) == project.resolve()
    assert [t.title for t in discover(tasks).units["a"].tasks] == ["Notes"]
    (tasks / "a" / "02-away.md").symlink_to(tmp_path / "away.md")
    with pytest.raises(PlanInvalid, match=r"02-away.md: links to .*away.md, outside the repo"):
        discover(tasks)
