"""What used to stop the daemon from starting, through the installed ``choo``:
a web port that another program holds, and a history.db that is not a
valid database."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from choo_daemon import store
from protocol.home import Home, read_token
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
        assert f"history: {url}/?token={read_token(home)}#/history?run={run['id']}" in out
        assert f":{taken_port}" not in out

        shown = one_line(run_choo("daemon", "status", cwd=repo.root).stdout)
        assert f"web UI {url}" in shown
        log = home.log.read_text()
        assert f"web port {taken_port} on 127.0.0.1 is in use; the web UI is at {url}" in log
    finally:
        stop_daemon(home)


# -- a history.db that is not a valid database -------------------------------------


def garbage_database(home: Home) -> None:
    """A history.db of bytes that are no database at all."""
    home.database.write_bytes(bytes(range(256)) * 64)


def damaged_database(home: Home) -> None:
    """A real history with 200 runs, one page of it (the runs table's root) overwritten."""
    conn = store.open_write_connection(home.database)
    with conn:
        for i in range(200):
            store.create_run(
                conn,
                run_id=f"run_20260120_143052_{i:04x}",
                repo_path=f"/repositories/{'deep/' * 20}{i}",
                started_at="2026-01-20T14:30:52.123Z",
                parallelism=1,
                total_units=1,
            )
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()
    page_size = conn.pragma("page_size")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(home.database, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)  # no b-tree page starts with 0xff: always caught


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("damage", "sqlite_says"),
    [(garbage_database, "file is not a database"), (damaged_database, "malformed")],
    ids=["garbage", "damaged-page"],
)
def test_a_corrupt_history_db_is_named_and_can_be_set_aside(
    repo_factory: Callable[..., Repo],
    home: Home,
    history: History,
    damage: Callable[[Home], None],
    sqlite_says: str,
) -> None:
    repo = repo_factory(PLAN)
    damage(home)
    before = digest(home.database)
    expected = [
        f"history database {home.database} is not a valid SQLite database",
        sqlite_says,
        "move it aside with `choo daemon start --set-aside-corrupt`",
    ]

    refused = run_choo("daemon", "start", "--port", "0", cwd=repo.root)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    text = one_line(refused.stderr)
    assert all(needle in text for needle in expected), text
    run = run_choo("run", "specs/tasks", cwd=repo.root)
    assert run.returncode == 2, run.stdout + run.stderr
    text = one_line(run.stderr)
    assert "could not start the history daemon, so nothing was run" in text
    assert all(needle in text for needle in expected), text
    assert repo.agent_log() == []
    assert digest(home.database) == before, "the damaged file was changed"

    started = run_choo("daemon", "start", "--port", "0", "--set-aside-corrupt", cwd=repo.root)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        moved = re.search(r"moved to (\S+history\.db\.corrupt-\d{8}T\d{6}Z)", started.stderr)
        assert moved is not None, started.stderr
        aside = Path(moved.group(1))
        assert aside.parent == home.root
        assert digest(aside) == before, "the old file, byte for byte, under its new name"
        assert aside.name in home.log.read_text()

        ran = run_choo("run", "specs/tasks", cwd=repo.root)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert history.only_run()["status"] == "completed"
    finally:
        stop_daemon(home)
