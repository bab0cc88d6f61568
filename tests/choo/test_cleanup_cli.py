"""``choo cleanup`` and ``choo status`` over the runs an isolated run leaves (real git)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from choo.cli import app
from choo.orchestrator import gitwork, runstate
from choo.orchestrator.gitwork import Repo
from protocol.home import Home
from tests.choo.gitrepo import fake_run, isolate_git_config, land, plan_repo


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git_config(tmp_path, monkeypatch)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    found = plan_repo(tmp_path / "project")
    monkeypatch.chdir(found.root)
    return found


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def test_cleanup_lists_then_removes_a_landed_run(home: Home, repo: Repo) -> None:
    state = fake_run(home, repo, "r1")
    fake_run(home, repo, "r2")  # not landed: stays
    land(repo, state)
    folder = runstate.run_folder(home, repo, "r1")
    dry = invoke("cleanup", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would remove (dry run): 5 items of 1 run" in dry.output
    for name in (str(folder / "api"), str(folder / "_merge"), "choo/r1-api", "choo/r1 "):
        assert name in dry.output
    assert "choo/r2-api" not in dry.output
    assert dry.output.splitlines()[-1] == (
        "kept: run r2 has not landed; its work is on choo/r2 "
        "(take it: `git merge choo/r2`; drop it: `choo cleanup --all`)"
    )
    assert folder.exists()
    done = invoke("cleanup", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["dry_run"] is False
    assert {(item["run_id"], item["kind"]) for item in data["removed"]} == {
        ("r1", "worktree"),
        ("r1", "branch"),
        ("r1", "folder"),
    }
    assert not folder.exists() and not gitwork.branch_exists(repo, "choo/r1")
    assert invoke("cleanup").output.startswith("nothing to clean up")
    assert gitwork.branch_exists(repo, "choo/r2")


def test_cleanup_says_when_there_is_nothing_to_clean(home: Home, repo: Repo) -> None:
    fake_run(home, repo, "r1")  # finished, not landed
    nothing = invoke("cleanup")
    assert nothing.exit_code == 0, nothing.output
    assert "nothing to clean up: no finished run of" in nothing.output
    assert "choo cleanup --all" in nothing.output
    assert "kept: run r1 has not landed; its work is on choo/r1 (take it: `git merge choo/r1`" in (
        nothing.output
    )
    assert json.loads(invoke("cleanup", "--json").output) == {
        "dry_run": False,
        "removed": [],
        "kept": [{"run_id": "r1", "branch": "choo/r1"}],
    }
    every = invoke("cleanup", "--all")
    assert every.exit_code == 0, every.output
    assert "removed: 5 items of 1 run" in every.output
    assert "choo/r1 " in every.output  # the run branch too
    assert "kept" not in every.output
    again = invoke("cleanup", "--all")
    assert "nothing to clean up: no finished run of" in again.output


def test_cleanup_of_an_unknown_run_exits_2_naming_it(home: Home, repo: Repo) -> None:
    fake_run(home, repo, "r1")
    result = invoke("cleanup", "r9")
    assert result.exit_code == 2
    assert "no run r9" in result.output and "r1" in result.output
    assert runstate.run_folder(home, repo, "r1").exists()


def test_cleanup_outside_git_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    result = invoke("cleanup")
    assert result.exit_code == 2
    assert "not in a git repository" in result.output


def test_status_reads_the_branch_of_a_run_not_landed(home: Home, repo: Repo) -> None:
    before = invoke("status", "--json", "tasks")
    assert before.exit_code == 0, before.output
    assert "run" not in json.loads(before.output)
    fake_run(home, repo, "r1")  # task #1 complete on choo/r1 only
    table = invoke("status", "tasks")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0] == "run r1 has not landed: statuses from branch choo/r1"
    assert "1/2" in table.output
    data = json.loads(invoke("status", "--json", "tasks").output)
    assert data["run"] == {"id": "r1", "branch": "choo/r1", "landed": False}
    (api,) = data["units"]
    assert [t["status"] for t in api["tasks"]] == ["complete", "pending"]
    assert api["tasks"][0]["file"] == str(Path("tasks") / "api" / "01-first.md")
    # Landed: the folder's own statuses, which now are the same.
    land(repo, runstate.load(home, repo, "r1") or pytest.fail("no run r1"))
    after = json.loads(invoke("status", "--json", "tasks").output)
    assert "run" not in after
    assert [t["status"] for t in after["units"][0]["tasks"]] == ["complete", "pending"]
