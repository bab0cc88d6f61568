"""Data cannot drive the terminal: unit names, task titles, agent output and
repository paths holding ANSI escapes, BEL, CR and rich markup are printed
with their control characters shown ("␛", ``\\xNN``) and their markup as text,
by ``choo status``, ``choo run`` (and ``--dry-run``) and ``choo history``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from choo.term import shown, visible
from protocol.home import Home
from tests.choo.support import History, Repo, make_repo, plan_md, run_choo, task_md

ESCAPES = "\x1b[31m\x1b]0;title\x07"
UNIT = f"u{ESCAPES}[bold red]x\r"  # a folder name: no "/", so no closing tag
TITLE = f"T{ESCAPES}[bold red]x[/]"  # a title is one line: no "\r"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    files = {
        f"{UNIT}/IMPLEMENTATION_PLAN.md": plan_md(),
        f"{UNIT}/01-t.md": task_md(1, TITLE, "AGENT:fail-first"),
    }
    # Its path too: the history shows it. Units share the main tree (a branch
    # name cannot hold these characters).
    return make_repo(tmp_path / f"r{ESCAPES}[bold red]r", files, config={"isolation": "none"})


def printed(result: subprocess.CompletedProcess[str]) -> str:
    """Everything a command printed, checked: no control character but newlines."""
    text = result.stdout + result.stderr
    assert not any(c in text for c in "\x1b\x07\r"), text
    assert "␛[31m␛]0;title\\x07" in text, text
    return text


def test_visible_shows_every_control_character_and_nothing_else() -> None:
    assert visible("a\x1b[31mb\x07c\rd\ne\tf\x7f\x9bg ✓") == (
        "a␛[31mb\\x07c\\x0dd\\x0ae\\x09f\\x7f\\x9bg ✓"
    )
    assert visible("a\nb\tc\r", lines=True) == "a\nb\tc\\x0d"
    assert shown("[bold red]x[/]\x1b") == "\\[bold red]x\\[/]␛"


def test_status_and_dry_run(repo: Repo) -> None:
    status = printed(run_choo("status", cwd=repo.root))
    assert "[bold red]x\\x0d" in status and "[bold red]x[/]" in status
    dry = printed(run_choo("run", "--dry-run", "--no-daemon", cwd=repo.root))
    assert "[bold red]x\\x0d" in dry and "[bold red]x[/]" in dry
    # An error message quoting data: "--unit X: no such unit in ... (units: ...)".
    wrong = run_choo("run", "--dry-run", "--no-daemon", "--unit", f"{UNIT}[/]", cwd=repo.root)
    assert wrong.returncode == 2
    assert "--unit u␛[31m␛]0;title\\x07[bold red]x\\x0d[/]: no such unit" in printed(wrong)


def test_run_and_every_history_command(repo: Repo, home: Home, history: History) -> None:
    run = run_choo("run", cwd=repo.root)
    assert run.returncode == 0, run.stderr
    text = printed(run)
    assert f"#1 T{visible(ESCAPES)}[bold red]x[/]" in text  # task.completed
    assert "attempt 1 failed" in text  # task.retry
    (recorded,) = history.runs()
    run_id = recorded["id"]

    listed = run_choo("history", "list", "--all", cwd=repo.root)
    assert "r␛[31m␛]0;title\\x07[bold red]r" in printed(listed)
    assert "[bold red]x" in printed(run_choo("history", "show", run_id, cwd=repo.root))
    events = printed(run_choo("history", "events", run_id, cwd=repo.root))
    assert "ordinary agent chatter for u␛[31m" in events  # the agent's output, recorded
    tasks = printed(run_choo("history", "tasks", cwd=repo.root))
    assert "[bold red]" in tasks
    assert printed(run_choo("history", "events", run_id, "--unit", UNIT, cwd=repo.root))
