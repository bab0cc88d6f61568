"""One run per plan: ``choo run`` holds an OS lock on the plan for the whole run.

A second run of the same plan exits 2 naming the run, pid and start time that
hold it; a dry run needs no lock; a holder that dies releases it.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from choo.orchestrator.planlock import PlanLocked, hold_plan, lock_path, read_holder
from protocol.home import Home
from tests.choo.support import (
    History,
    Repo,
    kill_quietly,
    make_repo,
    pid_gone,
    plan_md,
    run_choo,
    task_md,
    wait_until,
)


def waiting_plan(tmp_path: Path) -> Repo:
    """One unit whose agent writes its pid, then waits for ``release`` to appear."""
    return make_repo(
        tmp_path / "repo",
        {
            "u/IMPLEMENTATION_PLAN.md": plan_md(),
            "u/01-wait.md": task_md(1, "Wait", "AGENT:pidfile=agent.pid AGENT:wait-for=release"),
        },
    )


def wait_for_agent(repo: Repo) -> int:
    pidfile = repo.root / "agent.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text() != "", what="the agent to start")
    return int(pidfile.read_text())


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


# -- two real runs ---------------------------------------------------------------------


def test_a_second_run_of_a_plan_exits_2_naming_the_run_that_holds_it(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]], history: History
) -> None:
    repo = waiting_plan(tmp_path)
    first = spawn("run", "specs/tasks", cwd=repo.root)
    wait_for_agent(repo)
    run_id = history.only_run()["id"]

    second = run_choo("run", "specs/tasks", cwd=repo.root)
    (repo.root / "release").write_text("")
    _, err = first.communicate(timeout=60)

    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    refusal = one_line(second.stderr)
    assert f"plan specs/tasks is being run by {run_id} (pid {first.pid}, started " in refusal
    assert f"wait for it to end or stop it (Ctrl-C in its terminal, or kill {first.pid})" in refusal
    assert "Traceback" not in refusal
    # Exactly one ran: one agent call, one recorded run.
    assert len(repo.agent_starts()) == 1
    assert [r["id"] for r in history.runs()] == [run_id]
    assert repo.status_of("u/01-wait.md") == "complete"


def test_a_killed_holder_releases_the_plan(
    tmp_path: Path, home: Home, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    repo = waiting_plan(tmp_path)
    first = spawn("run", "specs/tasks", "--no-daemon", cwd=repo.root)
    agent = wait_for_agent(repo)
    lock = lock_path(home, repo.tasks_dir)
    holder = read_holder(lock)
    assert holder is not None and holder["pid"] == first.pid
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # Its record stays behind, naming a dead process; its agent, orphaned,
    # still runs. Neither blocks the next run (the agent did not inherit the lock).
    assert read_holder(lock) == holder
    assert not pid_gone(agent)
    (repo.root / "release").write_text("")
    try:
        second = run_choo("run", "specs/tasks", "--no-daemon", cwd=repo.root)
    finally:
        kill_quietly(agent)
    assert second.returncode == 0, second.stderr
    assert repo.status_of("u/01-wait.md") == "complete"
    assert not lock.exists(), "the lock file outlived the run that held it"


# -- against a lock held here ---------------------------------------------------------------


def test_a_run_is_refused_and_a_dry_run_is_not_while_the_plan_is_held(
    tmp_path: Path, home: Home
) -> None:
    repo = waiting_plan(tmp_path)
    (repo.root / "release").write_text("")
    with hold_plan(home, repo.tasks_dir, "run_20260101_000000_abcd"):
        refused = run_choo("run", "specs/tasks", "--no-daemon", cwd=repo.root)
        dry = run_choo("run", "specs/tasks", "--dry-run", "--no-daemon", cwd=repo.root)
    assert refused.returncode == 2, refused.stderr
    assert f"by run_20260101_000000_abcd (pid {os.getpid()}, started" in one_line(refused.stderr)
    assert dry.returncode == 0, dry.stderr
    assert "dry run of 1 unit" in dry.stdout
    assert repo.agent_starts() == []


def test_a_stale_lock_file_with_a_dead_pid_does_not_block(tmp_path: Path, home: Home) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = lock_path(home, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(f'{{"run_id": "run_old", "pid": {dead.pid}, "started_at": "x"}}')
    with hold_plan(home, tmp_path, "run_new") as lock:
        assert (read_holder(path) or {})["run_id"] == "run_new"
        assert lock.run_id == "run_new"


# -- the lock itself -----------------------------------------------------------------------


def test_the_lock_records_the_holder_and_update_rewrites_it(tmp_path: Path, home: Home) -> None:
    with hold_plan(home, tmp_path / "." / "tasks", None) as lock:
        path = lock_path(home, tmp_path / "tasks")
        assert lock.path == path
        assert path.parent == home.root / "locks"
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        first: dict[str, Any] = read_holder(path) or {}
        assert first["run_id"] is None
        assert first["pid"] == os.getpid()
        assert first["tasks_dir"] == str((tmp_path / "tasks").resolve())
        lock.update("run_20260101_000000_abcd")
        second = read_holder(path) or {}
        assert second == {**first, "run_id": "run_20260101_000000_abcd"}
    # Released: the file and its folder are gone, CHOO_HOME is as it was.
    assert not path.exists() and not path.parent.exists()


def test_a_second_hold_is_refused_even_in_one_process(tmp_path: Path, home: Home) -> None:
    with (
        hold_plan(home, tmp_path, None),
        pytest.raises(PlanLocked) as caught,
        hold_plan(home, tmp_path, "run_b"),
    ):
        pass
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert message.startswith(f"plan {tmp_path} is being run by a run that is starting (pid ")
    # Once released, it can be taken again.
    with hold_plan(home, tmp_path, "run_c"):
        pass


def test_other_plans_are_not_blocked(tmp_path: Path, home: Home) -> None:
    with hold_plan(home, tmp_path / "a", "run_a"), hold_plan(home, tmp_path / "b", "run_b"):
        assert len(list((home.root / "locks").iterdir())) == 2
