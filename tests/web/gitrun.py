"""An isolated run's events (issue 13), as the orchestrator writes them: what ``run_git`` reads.

``isolated_run`` is three units in their worktrees: "api" passes its task on
the second attempt and merges (with a baseline check), "docs" commits its
task but its merge conflicts and it fails (merge_conflict), "web" is still
running when the run ends (stopped). The run branch did not land. The store,
web, CLI and browser tests all write these same steps their own way.
"""

from __future__ import annotations

from typing import Any

# (type, unit, task, payload)
Step = tuple[str, str | None, int | None, dict[str, Any]]

RUN_BRANCH = "choo/run_git"
SPACE = "/tmp/choo-home/worktrees/repo-1a2b3c4d"
BASE = "b" * 40
API_AGENT_SHA = "1" * 40
API_CHOO_SHA = "2" * 40
DOCS_SHA = "3" * 40
MERGE_SHA = "4" * 40
LAND_COMMAND = f"git merge {RUN_BRANCH}"
RETRY = "validation_failed"


def worktree(run: str, unit: str, space: str = SPACE) -> str:
    return f"{space}/{run}/{unit}"


def commit(
    sha: str, subject: str, author: str, files: list[str], ins: int, dels: int
) -> dict[str, Any]:
    return {
        "sha": sha,
        "subject": subject,
        "author": author,
        "files": files,
        "insertions": ins,
        "deletions": dels,
    }


def committed(attempt: int, *commits: dict[str, Any]) -> dict[str, Any]:
    files = sorted({f for c in commits for f in c["files"]})
    return {
        "attempt": attempt,
        "commits": list(commits),
        "shas": [c["sha"] for c in commits],
        "files": files,
        "files_changed": len(files),
        "insertions": sum(c["insertions"] for c in commits),
        "deletions": sum(c["deletions"] for c in commits),
    }


def started(run: str, unit: str, space: str = SPACE) -> Step:
    return (
        "unit.started",
        unit,
        None,
        {
            "tasks": 1,
            "pending": 1,
            "provider": "claude",
            "worktree": worktree(run, unit, space),
            "branch": f"{RUN_BRANCH}-{unit}",
            "base": BASE,
        },
    )


def attempt(unit: str, task: int, n: int, passed: bool) -> list[Step]:
    ok = "task.validation.ok" if passed else "task.validation.fail"
    return [
        ("task.claude.invoke", unit, task, {"provider": "claude", "attempt": n}),
        ("task.claude.done", unit, task, {"attempt": n, "exit_code": 0, "duration_ms": 900}),
        (ok, unit, task, {"command": "make test", "attempt": n, "exit_code": 0 if passed else 1}),
    ]


def isolated_run(run: str = "run_git", space: str = SPACE) -> list[Step]:
    """The steps; ``space``: the folder of the repository's worktrees."""
    api_commits = committed(
        2,
        commit(API_AGENT_SHA, "Add the routes", "agent", ["api/routes.py"], 40, 2),
        commit(
            API_CHOO_SHA,
            "api #1: Routes <b>bold</b>",
            "choo",
            ["api/routes.py", "api/__init__.py", "tests/test_routes.py"],
            25,
            7,
        ),
    )
    docs_commits = committed(1, commit(DOCS_SHA, "docs #1: Readme", "choo", ["README.md"], 3, 1))
    into = {"branch": f"{RUN_BRANCH}-api", "into": RUN_BRANCH}
    return [
        (
            "run.branch",
            None,
            None,
            {
                "base": BASE,
                "branch": RUN_BRANCH,
                "head_branch": "main",
                "worktrees": f"{space}/{run}",
                "dirty": ["notes.txt"],
                "isolation": "worktree",
            },
        ),
        started(run, "api", space),
        ("task.started", "api", 1, {"title": "Routes", "max_attempts": 3}),
        *attempt("api", 1, 1, passed=False),
        ("task.retry", "api", 1, {"attempt": 1, "next_attempt": 2, "stop_reason": RETRY}),
        *attempt("api", 1, 2, passed=True),
        ("task.committed", "api", 1, api_commits),
        ("task.completed", "api", 1, {"title": "Routes", "attempts": 2, "duration_ms": 5000}),
        ("unit.merged", "api", None, {**into, "sha": MERGE_SHA}),
        (
            "unit.baseline.ok",
            "api",
            None,
            {"name": "lint", "command": "make lint", "exit_code": 0, "duration_ms": 120},
        ),
        ("unit.completed", "api", None, {"tasks": 1, "duration_ms": 9000}),
        started(run, "docs", space),
        ("task.started", "docs", 1, {"title": "Readme", "max_attempts": 3}),
        *attempt("docs", 1, 1, passed=True),
        ("task.committed", "docs", 1, docs_commits),
        ("task.completed", "docs", 1, {"title": "Readme", "attempts": 1, "duration_ms": 2000}),
        (
            "unit.merge.conflict",
            "docs",
            None,
            {"branch": f"{RUN_BRANCH}-docs", "into": RUN_BRANCH, "files": ["README.md"]},
        ),
        (
            "unit.failed",
            "docs",
            None,
            {
                "reason": "merge conflict in README.md",
                "stop_reason": "merge_conflict",
                "worktree": worktree(run, "docs", space),
            },
        ),
        started(run, "web", space),
        (
            "run.land",
            None,
            None,
            {
                "landed": False,
                "branch": RUN_BRANCH,
                "into": "main",
                "reason": "main has moved since the run started",
                "command": LAND_COMMAND,
            },
        ),
    ]
