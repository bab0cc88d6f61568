"""What used to stop the daemon from starting, through the installed ``choo``:
a web port that another program holds, and a history.db that is not a
valid database."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator

import pytest

from protocol.home import Home
from tests.choo.support import History, Repo, plan_md, run_choo, stop_daemon, task_md

PLAN = {
    "base/IMPLEMENTATION_PLAN.md": plan_md(),
    "base/01-first.md": task_md(1, "First"),
    "top/IMPLEMENTATION_PLAN.md": plan_md(["base"]),
    "top/01-second.md": task_md(1, "Second"),
}


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


# -- a web port in use -------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program listens on for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_web_port_in_use_moves_the_web_ui_and_history_is_recorded(
    repo_factory: Callable[..., Repo], home: Home, history: History, taken_port: int
) -> None:
    repo = repo_factory(PLAN)
    # `choo run` starts the daemon itself, asking for the port that is taken.
    result = run_choo("run", "--port", str(taken_port), "specs/tasks", cwd=repo.root)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        status = json.loads(run_choo("daemon", "status", "--json", cwd=repo.root).stdout)
        url = status["web"]
        served = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", url)
        assert served is not None and int(served.group(1)) not in (0, taken_port), url

        run = history.only_run()
        assert run["status"] == "completed"
        types = [e["type"] for e in history.events(run["id"])]
        assert types[0] == "orch.started" and types[-1] == "orch.completed"
        out = one_line(result.stdout)
        assert f"live at {url}" in out
        assert f"history: {url}/#/history?run={run['id']}" in out
        assert f":{taken_port}" not in out

        shown = one_line(run_choo("daemon", "status", cwd=repo.root).stdout)
        assert f"web UI {url}" in shown
        log = home.log.read_text()
        assert f"web port {taken_port} on 127.0.0.1 is in use; the web UI is at {url}" in log
    finally:
        stop_daemon(home)
