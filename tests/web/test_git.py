"""What a run did in git (issue 13): the store's ``run_git`` and its route,
``GET /api/history/runs/{run}/git``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import orjson
import pytest

from choo_daemon.store import (
    BadParameter,
    EventRow,
    UnknownRun,
    append_events,
    complete_run,
    create_run,
    fold_all,
    open_read_connection,
    open_write_connection,
    run_git,
    run_tasks,
)
from choo_daemon.store.gitreads import GIT_TYPES
from protocol.events import BY_NAME
from protocol.home import Home
from tests.daemon.test_session import Peer
from tests.web import gitrun
from tests.web.gitrun import Step, isolated_run
from tests.web.support import History, ev
from tests.web.test_live_only import acked, live_start, reply

RUN = "run_git"


def test_every_type_read_is_in_the_catalogue() -> None:
    assert all(name in BY_NAME for name in GIT_TYPES)


# -- the store ------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[apsw.Connection, apsw.Connection]]:
    path = tmp_path / "history.db"
    writer = open_write_connection(path)
    reader = open_read_connection(path)
    yield writer, reader
    reader.close()
    writer.close()


def store(conn: apsw.Connection, run: str, steps: list[Step], status: str | None) -> None:
    rows: list[EventRow] = [
        (run, seq, f"2026-01-01T00:01:{seq % 60:02d}.000Z", kind, unit, task, None,
         orjson.dumps(payload).decode(), None)
        for seq, (kind, unit, task, payload) in enumerate(steps, 1)
    ]  # fmt: skip
    with conn:
        create_run(
            conn,
            run_id=run,
            repo_path="/repo",
            started_at="2026-01-01T00:00:00.000Z",
            parallelism=2,
            total_units=3,
        )
        append_events(conn, rows)
        if status is not None:
            complete_run(
                conn,
                run,
                status=status,
                completed_at="2026-01-01T00:05:00.000Z",
                completed_units=1,
                failed_units=1,
                blocked_units=0,
            )
    fold_all(conn)


def check_isolated(git: dict[str, Any], run: str = RUN) -> None:
    """What ``isolated_run`` must give, ended as failed (web still running: stopped)."""
    assert git["run_id"] == run
    assert (git["branch"], git["base"], git["head_branch"], git["isolation"]) == (
        gitrun.RUN_BRANCH,
        gitrun.BASE,
        "main",
        "worktree",
    )
    assert git["worktrees"] == f"{gitrun.SPACE}/{run}" and git["dirty"] == ["notes.txt"]
    land = git["land"]
    assert (land["landed"], land["into"], land["sha"], land["command"]) == (
        False,
        "main",
        None,
        gitrun.LAND_COMMAND,
    )
    assert land["reason"] == "main has moved since the run started"
    commits = [
        (c["unit"], c["task"], c["attempt"], c["try"], c["sha"], c["author"])
        for c in git["commits"]
    ]
    assert commits == [
        ("api", 1, 2, 2, gitrun.API_AGENT_SHA, "agent"),
        ("api", 1, 2, 2, gitrun.API_CHOO_SHA, "choo"),
        ("docs", 1, 1, 1, gitrun.DOCS_SHA, "choo"),
    ]
    second = git["commits"][1]
    assert second["subject"] == "api #1: Routes <b>bold</b>"
    assert second["files"] == ["api/routes.py", "api/__init__.py", "tests/test_routes.py"]
    assert (second["insertions"], second["deletions"]) == (25, 7)
    assert set(second) == {
        *("unit", "task", "attempt", "try", "seq", "time", "sha", "subject", "author"),
        *("files", "insertions", "deletions"),
    }
    (merge,) = git["merges"]
    assert (merge["unit"], merge["sha"], merge["into"]) == ("api", gitrun.MERGE_SHA, "choo/run_git")
    (conflict,) = git["conflicts"]
    assert (conflict["unit"], conflict["files"]) == ("docs", ["README.md"])
    (baseline,) = git["baselines"]
    assert (baseline["unit"], baseline["ok"], baseline["name"]) == ("api", True, "lint")
    assert git["kept_worktrees"] == [
        {
            "unit": "docs",
            "path": gitrun.worktree(run, "docs"),
            "branch": "choo/run_git-docs",
            "status": "failed",
        },
        {
            "unit": "web",
            "path": gitrun.worktree(run, "web"),
            "branch": "choo/run_git-web",
            "status": "stopped",
        },
    ]


def test_the_store_reads_an_isolated_runs_git(db: tuple[apsw.Connection, apsw.Connection]) -> None:
    writer, reader = db
    store(writer, RUN, isolated_run(), "failed")
    git = run_git(reader, "run_g")  # a prefix will do
    check_isolated(git)
    # The attempt numbers are those of /tasks.
    (api,) = run_tasks(reader, RUN, unit="api")["tasks"]
    assert [a["attempt"] for a in api["attempts"]] == [1, 2]

    narrow = run_git(reader, RUN, unit="api", task=1)
    assert [c["sha"] for c in narrow["commits"]] == [gitrun.API_AGENT_SHA, gitrun.API_CHOO_SHA]
    assert narrow["merges"] == git["merges"] and narrow["conflicts"] == []
    assert narrow["kept_worktrees"] == [] and narrow["branch"] == gitrun.RUN_BRANCH
    assert run_git(reader, RUN, unit="api", task=2)["commits"] == []
    with pytest.raises(BadParameter):
        run_git(reader, RUN, task=1)
    with pytest.raises(UnknownRun):
        run_git(reader, "run_nowhere")


def test_a_running_run_keeps_no_worktree_of_a_running_unit(
    db: tuple[apsw.Connection, apsw.Connection],
) -> None:
    writer, reader = db
    store(writer, RUN, isolated_run(), None)
    git = run_git(reader, RUN)
    assert [(k["unit"], k["status"]) for k in git["kept_worktrees"]] == [("docs", "failed")]


def test_a_resumed_runs_commit_belongs_to_the_attempt_begun_last_with_its_try(
    db: tuple[apsw.Connection, apsw.Connection],
) -> None:
    # Before the stop, try 1 ran; the resumed orchestrator's try 1 is attempt 2.
    writer, reader = db
    one = gitrun.committed(1, gitrun.commit("9" * 40, "u #1: T", "choo", ["a.py"], 1, 0))
    steps: list[Step] = [
        ("task.started", "u", 1, {"title": "T"}),
        *gitrun.attempt("u", 1, 1, passed=False),
        ("run.stopped", None, None, {"reason": "SIGINT"}),
        ("run.resumed", None, None, {"reason": "choo resume"}),
        ("task.started", "u", 1, {"title": "T"}),
        *gitrun.attempt("u", 1, 1, passed=True),
        ("task.committed", "u", 1, one),
        ("task.completed", "u", 1, {"attempts": 1}),
    ]
    store(writer, RUN, steps, "completed")
    (c,) = run_git(reader, RUN)["commits"]
    assert (c["attempt"], c["try"]) == (2, 1)


def test_a_run_that_was_not_isolated_has_the_empty_structure(
    db: tuple[apsw.Connection, apsw.Connection],
) -> None:
    writer, reader = db
    steps: list[Step] = [
        ("unit.started", "u", None, {"tasks": 1, "pending": 1}),
        ("unit.failed", "u", None, {"reason": "task 1 failed"}),
    ]
    store(writer, RUN, steps, "failed")
    assert run_git(reader, RUN) == {
        "run_id": RUN,
        "branch": None,
        "base": None,
        "head_branch": None,
        "worktrees": None,
        "isolation": None,
        "dirty": [],
        "land": None,
        "commits": [],
        "merges": [],
        "conflicts": [],
        "baselines": [],
        "kept_worktrees": [],
    }


# -- the route ------------------------------------------------------------------------


def messages(run: str, steps: list[Step]) -> list[dict[str, Any]]:
    return [
        ev(run, seq, kind, unit=unit, task=task, payload=payload)
        for seq, (kind, unit, task, payload) in enumerate(steps, 1)
    ]


async def test_the_route_serves_a_runs_git(web: httpx.AsyncClient, history: History) -> None:
    await history.start(RUN)
    await history.send(messages(RUN, isolated_run()))
    await history.complete(RUN, "failed")
    response = await web.get(f"/api/history/runs/{RUN}/git")
    assert response.status_code == 200
    check_isolated(response.json())
    narrow = await web.get(f"/api/history/runs/{RUN}/git", params={"unit": "docs", "task": "1"})
    assert [c["sha"] for c in narrow.json()["commits"]] == [gitrun.DOCS_SHA]
    missing = await web.get("/api/history/runs/run_nowhere/git")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_run"
    for query in ({"task": "1"}, {"unit": "api", "task": "x"}):
        bad = await web.get(f"/api/history/runs/{RUN}/git", params=query)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_parameter"


async def test_the_route_serves_a_run_that_is_not_recorded(
    home: Home, web: httpx.AsyncClient
) -> None:
    run = "run_20260301_120000_gitl"
    peer = await Peer.connect(home)
    await peer.send(live_start(run))
    assert (await reply(peer, 1))["t"] == "ok"
    steps = isolated_run(run)
    await peer.send(*messages(run, steps))
    await acked(peer, run, len(steps))
    git = (await web.get(f"/api/history/runs/{run}/git")).json()
    assert [(c["unit"], c["attempt"]) for c in git["commits"]] == [
        ("api", 2),
        ("api", 2),
        ("docs", 1),
    ]
    assert git["land"]["command"] == gitrun.LAND_COMMAND
    # Still running: only the failed unit's worktree is kept so far.
    assert [k["unit"] for k in git["kept_worktrees"]] == ["docs"]
