"""Real git repositories for the tests of isolated runs: no user or system config leaks in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
