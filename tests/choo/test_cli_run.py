"""``choo run`` / ``status`` through the installed executable: daemon use, flags, errors,
signals, and secrets; plus one in-process run whose daemon dies half way."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import apsw
import pytest
from typer.testing import CliRunner, Result

from choo import runner
from choo.cli import app
from protocol.home import Home
from tests.choo.support import (
    History,
    Repo,
    choo_env,
    make_repo,
    pid_gone,
    plan_md,
    run_choo,
    stop_daemon,
    task_md,
    wait_until,
)

SMALL = {
    "base/IMPLEMENTATION_PLAN.md": plan_md(),
    "base/01-first.md": task_md(1, "First", backpressure="test -d specs"),
    "top/IMPLEMENTATION_PLAN.md": plan_md(["base"]),
    "top/01-second.md": task_md(1, "Second"),
}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo", SMALL)


def invoke(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str) -> Result:
    """``choo ARGS`` in-process (typer's CliRunner), from ``cwd``."""
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, list(args))


def home_files(home: Home) -> list[str]:
    return sorted(p.name for p in home.root.iterdir())


def path_without_agents(tmp_path: Path) -> str:
    """A PATH holding git only (repository roots are found with it), no claude or codex."""
    bin_dir = tmp_path / "only-git"
    bin_dir.mkdir()
    git = shutil.which("git")
    assert git is not None
    (bin_dir / "git").symlink_to(git)
    return str(bin_dir)


def assert_nothing_ran(repo: Repo, before: dict[str, bytes]) -> None:
    assert repo.agent_log() == [], "the agent was called"
    assert repo.snapshot() == before, "a task file changed"


# -- daemon use --------------------------------------------------------------------


def test_no_daemon_contacts_and_starts_nothing(repo: Repo, home: Home) -> None:
    result = run_choo("run", "--no-daemon", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert "run completed" in result.stdout
    assert repo.status_of("base/01-first.md") == "complete"
    assert repo.status_of("top/01-second.md") == "complete"
    assert home_files(home) == [], "no socket, database, pid file or log in CHOO_HOME"


def test_no_history_starts_the_daemon_but_records_nothing(repo: Repo, home: Home) -> None:
    result = run_choo("run", "--no-history", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert repo.status_of("top/01-second.md") == "complete"
    status = run_choo("daemon", "status", "--json", cwd=repo.root)
    assert status.returncode == 0, "the daemon was started and still runs"
    assert json.loads(status.stdout)["running"] is True
    assert History(home).runs() == []
    assert "warning" not in result.stdout + result.stderr


def test_auto_start_false_without_a_daemon_is_an_error(repo: Repo, home: Home) -> None:
    before = repo.snapshot()
    env = choo_env(CHOO_DAEMON_AUTO_START="false")
    result = run_choo("run", "specs/tasks", cwd=repo.root, env=env)
    assert result.returncode == 2  # the daemon cannot be started: configuration, not a failed run
    assert "no daemon is running and daemon.auto_start is false" in result.stderr
    assert "--no-daemon" in result.stderr
    assert_nothing_ran(repo, before)
    assert home_files(home) == []


def test_a_daemon_that_cannot_start_fails_the_run_before_any_work(repo: Repo, home: Home) -> None:
    conn = apsw.Connection(str(home.database))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = repo.snapshot()
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    assert result.returncode == 2
    assert "could not start the history daemon, so nothing was run" in result.stderr
    assert "schema version 99" in result.stderr
    assert_nothing_ran(repo, before)
    conn = apsw.Connection(str(home.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.pragma("user_version") == 99
        tables = list(conn.execute("SELECT name FROM sqlite_master"))
        assert tables == [], "no run recorded, nothing written"
    finally:
        conn.close()


def test_a_home_too_long_for_a_socket_fails_the_run_before_any_work(repo: Repo, home: Home) -> None:
    long_home = home.root / ("h" * 100)
    before = repo.snapshot()
    result = run_choo("run", "specs/tasks", cwd=repo.root, env=choo_env(CHOO_HOME=str(long_home)))
    assert result.returncode == 2
    assert "could not start the history daemon" in result.stderr
    assert "over the 100-byte limit for Unix sockets" in result.stderr
    assert_nothing_ran(repo, before)
    assert not long_home.exists() or list(long_home.iterdir()) == []


# -- errors before any work ----------------------------------------------------------


def test_a_missing_provider_program_fails_before_any_work(
    repo: Repo, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo.root / ".choo.yaml").write_text(
        json.dumps({"provider": {"name": "command", "command": ["no-such-agent-xyz"]}})
    )
    before = repo.snapshot()
    result = invoke(monkeypatch, repo.root, "run", "specs/tasks")
    assert result.exit_code == 2
    assert "provider 'command' needs the program 'no-such-agent-xyz'" in result.stderr
    assert_nothing_ran(repo, before)
    assert home_files(home) == [], "no daemon started, no run recorded"


def test_a_missing_claude_fails_before_any_work(
    repo: Repo, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = repo.snapshot()
    monkeypatch.setenv("PATH", path_without_agents(tmp_path))
    result = invoke(monkeypatch, repo.root, "run", "--provider", "claude", "specs/tasks")
    assert result.exit_code == 2
    assert "provider 'claude' needs the program 'claude', which is not on PATH" in result.stderr
    assert_nothing_ran(repo, before)
    assert home_files(home) == []


def test_a_unit_provider_that_is_missing_fails_before_any_work(
    repo: Repo, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write({"top/IMPLEMENTATION_PLAN.md": plan_md(["base"], provider="codex")})
    before = repo.snapshot()
    monkeypatch.setenv("PATH", path_without_agents(tmp_path))
    result = invoke(monkeypatch, repo.root, "run", "specs/tasks")
    assert result.exit_code == 2
    assert "provider 'codex' needs the program 'codex', which is not on PATH" in result.stderr
    assert_nothing_ran(repo, before)
    assert home_files(home) == []


BROKEN = {
    "a/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [nope]\n---\n",
    "a/01-x.md": "---\ntask: 1\nstatus: done\nbackpressure: none\n---\n# X\n",
    "a/02-y.md": "---\ntask: 1\nbackpressure: none\n---\n# Y\n",
    "b/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [c]\n---\n",
    "b/01-z.md": "---\ntask: 1\n# never closed\n",
    "c/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [b]\n---\n",
    "c/01-w.md": "---\ntask: [1\n---\n# W\n",
}


def test_a_broken_plan_lists_every_problem_and_runs_nothing(
    tmp_path: Path, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", BROKEN)
    before = repo.snapshot()
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    assert result.returncode == 2
    err = result.stderr
    assert "6 problems in the task files" in err
    expected = [
        'specs/tasks/a/IMPLEMENTATION_PLAN.md: depends_on: unit "nope" does not exist',
        "specs/tasks/a/01-x.md: status: expected one of pending, in_progress, complete, failed",
        "specs/tasks/a/02-y.md: task: task number 1 is also used by specs/tasks/a/01-x.md",
        "specs/tasks/b/01-z.md: frontmatter opened with '---' on line 1 is never closed",
        "specs/tasks/c/01-w.md: invalid YAML at line",
        "specs/tasks/b/IMPLEMENTATION_PLAN.md: depends_on: dependency cycle between units "
        "b -> c -> b",
    ]
    for line in expected:
        assert line in err, line
    assert_nothing_ran(repo, before)
    assert home_files(home) == []
    # choo status reports the same problems.
    status = invoke(monkeypatch, repo.root, "status", "specs/tasks")
    assert status.exit_code == 2
    assert all(line in status.stderr for line in expected)


def test_a_tasks_dir_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(monkeypatch, tmp_path, "run", "nowhere")
    assert result.exit_code == 2
    assert "nowhere is not a folder of units" in result.stderr


# -- dry run, status, parallelism ----------------------------------------------------


def test_dry_run_prints_the_plan_records_it_and_executes_nothing(
    repo: Repo, home: Home, history: History
) -> None:
    before = repo.snapshot()
    result = run_choo("run", "--dry-run", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    start = lines.index("level 0:")
    assert lines[start : start + 6] == [
        "level 0:",
        "base",
        "#1 First pending",
        "level 1:",
        "top (after base)",
        "#1 Second pending",
    ]
    assert_nothing_ran(repo, before)
    run = history.only_run()
    assert run["dry_run"] == 1
    assert run["status"] == "completed"
    assert run["repo_path"] == str(repo.root.resolve())
    assert run["tasks_dir"] == str(repo.tasks_dir.resolve())
    assert [e["type"] for e in history.events(run["id"])] == [
        "orch.dryrun.started",
        "orch.dryrun.completed",
    ]
    graph = history.graph(run["id"])
    assert graph["levels"] == [["base"], ["top"]]
    assert graph["edges"] == [{"from": "top", "to": "base"}]
    assert [n["id"] for n in graph["nodes"]] == ["base", "top"]


def test_status_shows_units_and_tasks(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.write({"base/01-first.md": task_md(1, "First", status="complete")})
    result = run_choo("status", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    rows = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    assert "0 base 1/1 complete" in rows
    assert "#1 First complete" in rows
    assert "1 top 0/1 pending base" in rows
    assert "#1 Second pending" in rows

    as_json = invoke(monkeypatch, repo.root, "status", "--json", "specs/tasks")
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["tasks_dir"] == "specs/tasks"
    units = {u["id"]: u for u in data["units"]}
    assert units["base"]["status"] == "complete"
    assert units["top"] == {
        "id": "top",
        "level": 1,
        "depends_on": ["base"],
        "status": "pending",
        "tasks": [
            {
                "number": 1,
                "title": "Second",
                "status": "pending",
                "depends_on": [],
                "file": "specs/tasks/top/01-second.md",
            }
        ],
    }


def most_at_once(calls: list[dict[str, Any]]) -> int:
    """The most agent processes alive at the same moment."""
    moments = sorted(
        [(c["time"], 1) for c in calls if c["kind"] == "start"]
        + [(c["time"], -1) for c in calls if c["kind"] == "end"]
    )
    alive = peak = 0
    for _, change in moments:
        alive += change
        peak = max(peak, alive)
    return peak


def test_parallelism_flag_limits_units_at_once(tmp_path: Path) -> None:
    files = {}
    for name in ("a", "b", "c", "d"):
        files[f"{name}/IMPLEMENTATION_PLAN.md"] = plan_md()
        files[f"{name}/01-t.md"] = task_md(1, name, "AGENT:sleep=0.5")
    repo = make_repo(tmp_path / "repo", files)
    result = run_choo("run", "--no-daemon", "-p", "2", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert most_at_once(repo.agent_log()) == 2  # the default, 4, would allow all four


def test_a_failed_unit_fails_the_run_and_blocks_its_dependents(tmp_path: Path) -> None:
    files = {
        **SMALL,
        "base/01-first.md": task_md(1, "First", "AGENT:fail-always"),
        "other/IMPLEMENTATION_PLAN.md": plan_md(),
        "other/01-t.md": task_md(1, "Independent"),
    }
    repo = make_repo(tmp_path / "repo", files, config={"attempts": 1})
    result = run_choo("run", "--no-daemon", "specs/tasks", cwd=repo.root)
    assert result.returncode == 1
    assert "top blocked by base" in result.stdout
    assert "run failed" in result.stdout
    assert repo.status_of("base/01-first.md") == "failed"
    assert repo.status_of("top/01-second.md") == "pending"
    assert repo.status_of("other/01-t.md") == "complete"


# -- signals -------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_workers_and_their_agents_and_records_the_stop(
    tmp_path: Path, spawn: Any, history: History, signum: signal.Signals, code: int
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "slow/IMPLEMENTATION_PLAN.md": plan_md(),
            "slow/01-long.md": task_md(1, "Long", "AGENT:pidfile=agent.pid AGENT:sleep=60"),
        },
    )
    proc = spawn("run", "specs/tasks", cwd=repo.root)
    pidfile = repo.root / "agent.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text() != "", what="the agent to start")
    agent = int(pidfile.read_text())
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert pid_gone(agent), "the agent outlived the stop"
    assert f"stopped: {signum.name} received" in out
    assert "run stopped" in out
    run = history.only_run()
    assert run["status"] == "stopped"
    events = history.events(run["id"])
    assert events[-1]["type"] == "run.stopped"
    assert events[-1]["payload"] == {
        "reason": f"{signum.name} received; workers stopped",
        "signal": signum.name,
    }
    assert history.count_events("run.stopped") == 1
    assert repo.status_of("slow/01-long.md") == "pending"


# -- secrets ---------------------------------------------------------------------------


def test_secrets_in_agent_output_never_reach_the_database_file(
    tmp_path: Path, home: Home, history: History
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "u/IMPLEMENTATION_PLAN.md": plan_md(),
            "u/01-t.md": task_md(1, "Talkative", "AGENT:secrets"),
        },
    )
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    run = history.only_run()
    (done,) = [e for e in history.events(run["id"]) if e["type"] == "task.claude.done"]
    tail = done["payload"]["output_tail"]
    assert "before [REDACTED] after" in tail
    assert "Authorization: Bearer [REDACTED]" in tail
    assert "closing words stay" in tail
    stop_daemon(home)
    raw = b"".join(p.read_bytes() for p in home.root.glob("history.db*"))
    assert b"AKIAIOSFODNN7EXAMPLE" not in raw
    assert b"abcdef123456789" not in raw
    assert b"closing words stay" in raw
    assert b"before [REDACTED] after" in raw


# -- history failure mid-run (in-process, to shorten the end-of-run wait) ---------------


def test_history_failure_mid_run_warns_once_and_the_run_completes(
    tmp_path: Path, daemon_process: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "u/IMPLEMENTATION_PLAN.md": plan_md(),
            "u/01-kill.md": task_md(1, "Kill the daemon", "AGENT:kill-daemon"),
            "u/02-after.md": task_md(2, "After", depends_on=[1]),
            "u/03-later.md": task_md(3, "Later", depends_on=[2]),
        },
    )
    daemon_pid = int(daemon_process.pidfile.read_text().split()[0])
    monkeypatch.setenv("CHOO_DAEMON_AUTO_START", "false")  # nobody restarts it
    # The run waits this long for the daemon to confirm its end before it warns.
    monkeypatch.setattr(runner, "COMPLETE_TIMEOUT", 1.0)
    result = invoke(monkeypatch, repo.root, "run", "specs/tasks")
    output = result.output
    assert result.exit_code == 0, output
    assert pid_gone(daemon_pid)
    assert output.count("warning") == 1, output
    assert "history:" in output
    # What the daemon could not confirm waits in the spool for the next daemon.
    assert "were saved to" in output and str(daemon_process.spool) in output.replace("\n", "")
    assert len(list(daemon_process.spool.glob("*.frames"))) == 1
    assert "run completed" in output
    for name in ("01-kill.md", "02-after.md", "03-later.md"):
        assert repo.status_of(f"u/{name}") == "complete"
    assert os.path.exists(daemon_process.database)
