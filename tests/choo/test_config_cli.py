"""Configuration through the installed executable: ``choo config show``, bad
files stopping everything, and every daemon/history key reaching the code
that needs it (daemon start, choo run's auto-start)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from choo_daemon import store
from protocol.home import Home
from tests.choo.seed import ago
from tests.choo.support import (
    History,
    Repo,
    choo_env,
    plan_md,
    run_choo,
    stop_daemon,
    task_md,
    wait_until,
)

PLAN = {
    "u/IMPLEMENTATION_PLAN.md": plan_md(),
    "u/01-task.md": task_md(1, "Quick"),
}


@pytest.fixture
def global_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    path = xdg / "choo" / "config.yaml"
    path.parent.mkdir(parents=True)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root.resolve()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def old_and_new_runs(home: Home, *days: int) -> None:
    """Finished runs started ``days`` ago (IDs run_<days>d), written before any daemon runs."""
    conn = store.open_write_connection(home.database)
    try:
        for age in days:
            with conn:
                run_id = f"run_{age}d"
                store.create_run(
                    conn,
                    run_id=run_id,
                    repo_path="/elsewhere",
                    started_at=ago(days=age),
                    parallelism=1,
                    total_units=0,
                )
                store.complete_run(
                    conn,
                    run_id,
                    status="completed",
                    completed_at=ago(days=age),
                    completed_units=0,
                    failed_units=0,
                    blocked_units=0,
                )
    finally:
        conn.close()


def run_ids(home: Home) -> set[str]:
    return {r["id"] for r in History(home).runs()}


def log_lines(home: Home, start: str) -> list[str]:
    if not home.log.exists():
        return []
    return [line for line in home.log.read_text().splitlines() if start in line]


# -- config show ---------------------------------------------------------------------


def test_config_show_prints_each_value_and_where_it_came_from(
    global_file: Path, repo: Path
) -> None:
    global_file.write_text("parallelism: 2\nhistory:\n  retention_days: 30\n")
    (repo / ".choo.yaml").write_text("parallelism: 3\nprovider: codex\n")
    env = choo_env(CHOO_ATTEMPTS="5", COLUMNS="400")  # long temporary paths stay whole
    text = run_choo("config", "show", cwd=repo, env=env)
    assert text.returncode == 0, text.stderr
    rows = {
        cells[0]: cells[1:]
        for line in text.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("│ ").split("│")]) and len(cells) == 5
    }
    assert rows["parallelism"][:2] == ["3", str(repo / ".choo.yaml")]
    assert rows["provider.name"][:2] == ["codex", str(repo / ".choo.yaml")]
    assert rows["history.retention_days"][:2] == ["30", str(global_file)]
    assert rows["attempts"][:2] == ["5", "env CHOO_ATTEMPTS"]
    assert rows["daemon.port"][:2] == ["0", "env CHOO_DAEMON_PORT"]
    assert rows["daemon.host"][:3] == ["127.0.0.1", "default", "user"]
    assert rows["history.enabled"][2] == "repo" and rows["parallelism"][2] == "repo"
    assert "a repository's .choo.yaml may not" in text.stdout
    assert f"{global_file}: read" in text.stdout
    assert f"{repo / '.choo.yaml'}: read" in text.stdout

    data = json.loads(run_choo("config", "show", "--json", cwd=repo, env=env).stdout)
    keys = {k["key"]: k for k in data["keys"]}
    assert keys["parallelism"]["value"] == 3
    assert keys["parallelism"]["source"] == str(repo / ".choo.yaml")
    assert keys["provider.timeout"] == {
        "key": "provider.timeout",
        "value": 1800.0,
        "source": "default",
        "scope": "repo",
        "help": "seconds one agent call may take",
    }
    assert keys["history.retention_days"]["scope"] == "user"
    assert data["files"] == [
        {"path": str(global_file), "found": True},
        {"path": str(repo / ".choo.yaml"), "found": True},
    ]


def test_config_show_warns_about_unknown_keys(repo: Path) -> None:
    (repo / ".choo.yaml").write_text("history:\n  retention_day: 3\n")
    result = run_choo("config", "show", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert (
        f"{repo / '.choo.yaml'}: unknown key 'history.retention_day' "
        "(did you mean 'history.retention_days'?)"
    ) in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daemon:\n  port: web\n", "daemon.port must be an integer, found the text 'web'"),
        ("history.retention_days: -1\n", "history.retention_days must be at least 0, found -1"),
        ("history:\n  enabled: maybe\n", "history.enabled must be true or false, found the text"),
        ("daemon.host: 127\n", "daemon.host must be a string, found the number 127"),
        ("provider: 3\n", "provider.name must be a string, found the number 3"),
    ],
)
def test_a_wrong_value_stops_config_show_and_daemon_start(
    global_file: Path, repo: Path, home: Home, text: str, expected: str
) -> None:
    # The user's keys are read from the user config only.
    user_key = text.startswith(("daemon", "history.retention"))
    path = global_file if user_key else repo / ".choo.yaml"
    path.write_text(text)
    for args in (["config", "show"], ["daemon", "start"]):
        result = run_choo(*args, cwd=repo)
        assert result.returncode == 2, (args, result.stdout)
        assert f"{path}: {expected}" in result.stderr
    assert not home.socket.exists(), "no daemon started"
    assert not home.pidfile.exists()


# -- the keys reach the daemon ----------------------------------------------------------


def test_daemon_start_takes_port_host_and_retention_from_the_configuration(
    global_file: Path, repo: Path, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHOO_DAEMON_PORT")
    host = "127.0.0.2"
    port = free_port(host)
    global_file.write_text(
        f"daemon:\n  host: '{host}'\n  port: {port}\nhistory:\n  retention_days: 10\n"
    )
    old_and_new_runs(home, 20, 5)
    started = run_choo("daemon", "start", cwd=repo)
    assert started.returncode == 0, started.stderr
    try:
        assert f"web UI http://{host}:{port}" in started.stdout
        wait_until(lambda: bool(log_lines(home, "retention: pruned")), what="retention")
        assert (
            "retention: pruned 1 run(s) (0 events) started over 10 days ago"
            in (log_lines(home, "retention: pruned")[0])
        )
        assert run_ids(home) == {"run_5d"}
        # The history commands find it on that address (its Host is allowed).
        listed = run_choo("history", "list", "--all", "--json", cwd=repo)
        assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == ["run_5d"]
    finally:
        stop_daemon(home)


def test_a_retention_of_zero_keeps_every_run(repo: Path, home: Home) -> None:
    old_and_new_runs(home, 5000)
    env = choo_env(CHOO_HISTORY_RETENTION_DAYS="0")
    assert run_choo("daemon", "start", cwd=repo, env=env).returncode == 0
    try:
        pruned = run_choo("history", "prune", "--older-than", "6000", cwd=repo)
        assert "deleted 0 runs" in pruned.stdout, pruned.stderr
        assert log_lines(home, "retention:") == []
        assert run_ids(home) == {"run_5000d"}
    finally:
        stop_daemon(home)


def test_choo_run_starts_the_daemon_with_the_configured_retention(
    global_file: Path, repo_factory: Callable[..., Repo], home: Home
) -> None:
    global_file.write_text("history:\n  retention_days: 10\n")
    repo = repo_factory(PLAN)
    old_and_new_runs(home, 20)
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    try:
        wait_until(lambda: bool(log_lines(home, "retention: pruned")), what="retention")
        assert "pruned 1 run(s)" in log_lines(home, "retention: pruned")[0]
        (run,) = History(home).runs()
        assert run["repo_path"] == str(repo.root.resolve())
    finally:
        stop_daemon(home)


@pytest.mark.parametrize(
    "setting",
    [{"history": {"enabled": False}}, {"history.enabled": False}],
    ids=["file", "dotted"],
)
def test_history_enabled_false_behaves_like_no_history(
    repo_factory: Callable[..., Repo], home: Home, setting: dict[str, Any]
) -> None:
    repo = repo_factory(PLAN, config=setting)
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    try:
        assert repo.status_of("u/01-task.md") == "complete"
        status = run_choo("daemon", "status", "--json", cwd=repo.root)
        assert json.loads(status.stdout)["running"] is True, "the daemon is used"
        assert History(home).runs() == [], "nothing recorded"
        assert "run completed" in result.stdout
    finally:
        stop_daemon(home)


def test_history_enabled_from_the_environment(
    repo_factory: Callable[..., Repo], home: Home
) -> None:
    repo = repo_factory(PLAN)
    env = choo_env(CHOO_HISTORY_ENABLED="false")
    result = run_choo("run", "specs/tasks", cwd=repo.root, env=env)
    assert result.returncode == 0, result.stderr
    try:
        assert History(home).runs() == []
    finally:
        stop_daemon(home)


def test_the_database_is_untouched_by_a_refused_configuration(
    global_file: Path, repo: Path, home: Home
) -> None:
    old_and_new_runs(home, 500)
    global_file.write_text("history.retention_days: soon\n")
    result = run_choo("daemon", "start", cwd=repo)
    assert result.returncode == 2
    conn = apsw.Connection(str(home.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert [r[0] for r in conn.execute("SELECT id FROM runs")] == ["run_500d"]
    finally:
        conn.close()


# -- the user's keys: not from a repository; a non-loopback address ---------------------

USER_KEYS = ("daemon.host", "daemon.port", "daemon.auto_start", "history.retention_days")
EXPOSED = "which is not a loopback address: other machines can reach it"


def daemon_argv(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def test_a_repository_cannot_move_expose_or_keep_the_daemon(
    global_file: Path,
    repo_factory: Callable[..., Repo],
    home: Home,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHOO_DAEMON_PORT")
    port = free_port("127.0.0.1")
    global_file.write_text(f"daemon.port: {port}\n")
    setting = {
        "daemon": {"host": "0.0.0.0", "port": 9999, "auto_start": False},
        "history": {"retention_days": 1},
    }
    repo = repo_factory(PLAN, config=setting)
    shown = run_choo("config", "show", cwd=repo.root)
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    try:
        assert result.returncode == 0, "auto_start: false is ignored: " + result.stderr
        for key in USER_KEYS:
            warning = f"{repo.root / '.choo.yaml'}: {key} is a user setting"
            assert warning in result.stderr and warning in shown.stderr, key
        assert f"Set it in the user config {global_file} instead" in result.stderr
        assert EXPOSED not in result.stdout + result.stderr
        status = json.loads(run_choo("daemon", "status", "--json", cwd=repo.root).stdout)
        assert status["web"].startswith(f"http://127.0.0.1:{port}")
        assert status["exposed"] is None
        argv = daemon_argv(status["pid"])
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--retention-days") + 1] == "90"
        assert History(home).only_run()["status"] == "completed"
    finally:
        stop_daemon(home)


def test_a_non_loopback_host_from_the_user_config_is_bound_with_a_warning(
    global_file: Path, repo_factory: Callable[..., Repo], home: Home
) -> None:
    global_file.write_text("daemon:\n  host: 0.0.0.0\n")
    repo = repo_factory(PLAN)
    result = run_choo("run", "specs/tasks", cwd=repo.root)
    try:
        assert result.returncode == 0, result.stderr
        assert f"the web UI binds 0.0.0.0, {EXPOSED}" in " ".join(result.stdout.split())
        text = run_choo("daemon", "status", cwd=repo.root)
        assert text.returncode == 0 and EXPOSED in text.stderr
        status = json.loads(run_choo("daemon", "status", "--json", cwd=repo.root).stdout)
        assert status["web"].startswith("http://0.0.0.0:")
        assert EXPOSED in status["exposed"]
        assert log_lines(home, EXPOSED), "the daemon logs it too"
        again = run_choo("daemon", "start", cwd=repo.root)
        assert "already running" in again.stdout and EXPOSED in again.stderr
    finally:
        stop_daemon(home)


def test_a_non_loopback_host_from_a_flag_but_not_from_the_environment(
    repo: Path, home: Home
) -> None:
    env = choo_env(CHOO_DAEMON_HOST="0.0.0.0")
    refused = run_choo("daemon", "start", cwd=repo, env=env)
    try:
        assert refused.returncode == 0, refused.stderr
        assert "env CHOO_DAEMON_HOST: '0.0.0.0' is not a loopback address" in refused.stderr
        assert EXPOSED not in refused.stderr
        status = json.loads(run_choo("daemon", "status", "--json", cwd=repo).stdout)
        assert status["web"].startswith("http://127.0.0.1:") and status["exposed"] is None
    finally:
        stop_daemon(home)
    started = run_choo("daemon", "start", "--host", "0.0.0.0", cwd=repo)
    try:
        assert started.returncode == 0, started.stderr
        assert f"the web UI binds 0.0.0.0, {EXPOSED}" in started.stderr
        status = json.loads(run_choo("daemon", "status", "--json", cwd=repo).stdout)
        assert status["web"].startswith("http://0.0.0.0:") and EXPOSED in status["exposed"]
    finally:
        stop_daemon(home)
