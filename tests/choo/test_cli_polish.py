"""The CLI's small print: ``--version``, help without ``<bool>``, counts in
the singular when there is one, and the "depends on" column of ``choo status``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from choo.cli import app
from choo.term import duration, duration_ms, plural, size
from protocol.home import Home
from tests.choo.support import History, Repo, plan_md, run_choo, task_md


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"choo {version('choo')}\n"
    installed = run_choo("--version", cwd=tmp_path)
    assert installed.returncode == 0 and installed.stdout == f"choo {version('choo')}\n"


def command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group under ``command``, as the words that name it."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():  # a group
        yield from command_paths(sub, (*path, name))


def test_no_help_text_shows_a_type_after_a_flag() -> None:
    paths = list(command_paths(typer.main.get_command(app)))
    assert ("daemon", "status") in paths and ("history", "prune") in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "--help" in result.output, path
        assert "<bool>" not in result.output, (path, result.output)
    print(f"{len(paths)} help pages checked")


@pytest.mark.parametrize(
    ("count", "word", "shown"),
    [(0, "unit", "0 units"), (1, "unit", "1 unit"), (2, "task", "2 tasks"), (1, "run", "1 run")],
)
def test_plural(count: int, word: str, shown: str) -> None:
    assert plural(count, word) == shown
    assert plural(1234, "event") == "1,234 events"


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(None, "-"), (0, "0 ms"), (999.9, "999 ms"), (1000, "1.0 s"), (59_949, "59.9 s"),
     (60_000, "1m 00s"), (3_599_999, "59m 59s"), (3_723_000, "1h 02m 03s")],
)  # fmt: skip
def test_durations_read_the_same_everywhere(ms: float | None, shown: str) -> None:
    assert duration_ms(ms) == shown
    if ms is not None and ms >= 60_000:
        assert duration(int(ms // 1000)) == shown  # the daemon's uptime
    assert duration(5) == "5s"


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
     (5 * 2**20, "5.0 MiB"), (3 * 2**30, "3.0 GiB"), (2**42, "4096.0 GiB")],
)  # fmt: skip
def test_sizes(n: int, shown: str) -> None:
    assert size(n) == shown


def test_counts_of_one_are_in_the_singular(
    repo_factory: Callable[..., Repo], daemon_process: Home, history: History
) -> None:
    repo = repo_factory(
        {
            "a/IMPLEMENTATION_PLAN.md": plan_md(),
            "a/01-broken.md": task_md(1, "B", "AGENT:fail-always"),
        },
        config={"attempts": 1},
    )
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    assert result.returncode == 1, result.stdout + result.stderr
    output = " ".join(result.stdout.split())
    assert "running 1 unit (1 task) in 1 level" in output
    assert "started (1 of 1 task to do)" in output
    assert "failed after 1 attempt:" in output
    run_id = history.only_run()["id"]
    (failed,) = [e for e in history.events(run_id) if e["type"] == "orch.failed"]
    assert failed["payload"]["reason"] == "1 unit failed, 0 blocked"

    listed = run_choo("history", "list", cwd=repo.root)
    assert "1 of 1 run " in listed.stdout, listed.stdout
    events = run_choo("history", "events", run_id, "--type", "orch.failed", cwd=repo.root)
    assert "1 event matching type orch.failed" in events.stdout, events.stdout

    dry = run_choo("run", "--dry-run", "--no-daemon", "specs/tasks", cwd=repo.root)
    assert "dry run of 1 unit (1 task) in 1 level" in " ".join(dry.stdout.split())


def test_status_fills_the_depends_on_column_for_units_and_tasks(
    repo_factory: Callable[..., Repo],
) -> None:
    repo = repo_factory(
        {
            "base/IMPLEMENTATION_PLAN.md": plan_md(),
            "base/01-first.md": task_md(1, "First"),
            "top/IMPLEMENTATION_PLAN.md": plan_md(["base"]),
            "top/01-one.md": task_md(1, "One"),
            "top/02-two.md": task_md(2, "Two", depends_on=[1]),
            "top/03-three.md": task_md(3, "Three", depends_on=[1, 2]),
        }
    )
    result = run_choo("status", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    rows = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    assert "1 top 0/3 pending base" in rows
    assert "#1 One pending" in rows
    assert "#2 Two pending #1" in rows
    assert "#3 Three pending #1, #2" in rows

    as_json = json.loads(run_choo("status", "--json", "specs/tasks", cwd=repo.root).stdout)
    (top,) = [u for u in as_json["units"] if u["id"] == "top"]
    assert [t["depends_on"] for t in top["tasks"]] == [[], [1], [1, 2]]
