"""``--port N`` while a daemon already runs on another port: ``choo daemon
start`` refuses (exit 2), ``choo run`` warns once and goes on."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from protocol.home import Home
from tests.choo.support import History, Repo, choo_env, plan_md, run_choo, task_md


@pytest.fixture
def served(daemon_process: Home) -> int:
    """The port of the running daemon's web UI (started with --port 0)."""
    status = run_choo("daemon", "status", "--json", cwd=daemon_process.root)
    port = urlsplit(json.loads(status.stdout)["web"]).port
    assert port is not None
    return port


def other_than(port: int) -> int:
    return port + 1 if port < 65535 else port - 1


def test_daemon_start_with_another_port_says_where_it_runs_and_how_to_move_it(
    home: Home, served: int
) -> None:
    wanted = other_than(served)
    result = run_choo("daemon", "start", "--port", str(wanted), cwd=home.root)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"web UI on port {served}, not {wanted}" in message
    assert f"choo daemon restart --port {wanted}" in message

    # The port it has, any port (0), no flag, or a port from the configuration only.
    for args, env in [
        (["--port", str(served)], {}),
        (["--port", "0"], {}),
        ([], {}),
        ([], {"CHOO_DAEMON_PORT": str(wanted)}),
    ]:
        again = run_choo("daemon", "start", *args, cwd=home.root, env=choo_env(**env))
        assert again.returncode == 0, (args, env, again.stderr)
        assert "already running" in again.stdout


def test_run_with_another_port_warns_once_and_runs_with_the_running_daemon(
    repo_factory: Callable[..., Repo], home: Home, history: History, served: int
) -> None:
    repo = repo_factory({"a/IMPLEMENTATION_PLAN.md": plan_md(), "a/01-one.md": task_md(1, "One")})
    wanted = other_than(served)
    result = run_choo("run", "--port", str(wanted), "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stdout + result.stderr
    output = " ".join(result.stdout.split())
    assert output.count("warning:") == 1, output
    assert f"--port {wanted} ignored" in output and f"on port {served}" in output
    assert f"choo daemon restart --port {wanted}" in output
    assert f"history: http://127.0.0.1:{served}/" in output
    assert history.only_run()["status"] == "completed"

    # Only an explicit flag counts, and --port 0 takes any port.
    for args, env in [(["--port", "0"], {}), ([], {"CHOO_DAEMON_PORT": str(wanted)})]:
        quiet = run_choo("run", *args, "specs/tasks", cwd=repo.root, env=choo_env(**env))
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        assert "warning" not in quiet.stdout + quiet.stderr, (args, env)
