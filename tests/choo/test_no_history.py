"""``choo run --no-history`` (and ``history.enabled: false``): the run is shown
live by the daemon and recorded nowhere, through the installed executable."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from protocol.home import Home
from tests.choo.support import CHOO, History, choo_env, make_repo, pid_gone, plan_md, task_md
from tests.daemon.test_secrets import database_bytes
from tests.web.support import SSE, bearer, open_sse


def plan(marker: str) -> dict[str, str]:
    return {
        "base/IMPLEMENTATION_PLAN.md": plan_md(),
        "base/01-first.md": task_md(1, f"First {marker}", backpressure="test -d specs"),
        "top/IMPLEMENTATION_PLAN.md": plan_md(["base"]),
        "top/01-second.md": task_md(1, f"Second {marker}"),
    }


async def web_url() -> str:
    status = await trio.run_process(
        [str(CHOO), "daemon", "status", "--json"], capture_stdout=True, check=True
    )
    url: str = json.loads(status.stdout)["web"]
    return url


async def live_messages(sse: SSE) -> list[tuple[str, Any]]:
    """What /api/live said, up to the first run.finished."""
    got: list[tuple[str, Any]] = []
    while not got or got[-1][0] != "run.finished":
        msg = await sse.next(timeout=30)
        assert msg is not None and msg.event is not None
        got.append((msg.event, msg.data))
    return got


@pytest.mark.parametrize("how", ["flag", "config"])
async def test_a_run_without_history_is_shown_live_and_stored_nowhere(
    tmp_path: Path, daemon_process: Home, how: str
) -> None:
    marker = f"NOHIST-{uuid.uuid4().hex}"
    config = {"history": {"enabled": False}} if how == "config" else None
    repo = make_repo(tmp_path / "repo", plan(marker), config=config)
    args = ["run", "--no-history", "specs/tasks"] if how == "flag" else ["run", "specs/tasks"]
    async with (
        httpx.AsyncClient(base_url=await web_url(), headers=bearer(daemon_process)) as web,
        open_sse(web, "/api/live") as live,
    ):
        ready = await live.next()
        assert ready is not None and ready.event == "ready" and ready.data["runs"] == []
        result = await trio.run_process(
            [str(CHOO), *args],
            cwd=repo.root,
            env=choo_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        output = (result.stdout + result.stderr).decode()
        assert result.returncode == 0, output
        got = await live_messages(live)
        kinds = [kind for kind, _ in got]
        assert kinds[0] == "run.started" and kinds[-1] == "run.finished", kinds
        run = got[0][1]["run"]
        assert run["history"] is False and run["repo_path"] == str(repo.root.resolve())
        # The live view shows run-level state: the last one before the end has it all.
        states = [data for kind, data in got if kind == "run.state"]
        assert {kind for kind, _ in got[1:-1]} == {"run.state"}, got
        last = states[-1]
        assert last["last_event"]["type"] == "orch.completed", last
        assert last["units"]["completed"] == 2 and last["units"]["total"] == 2
        finished = got[-1][1]["run"]
        assert (finished["id"], finished["status"]) == (run["id"], "completed")
        assert finished["completed_units"] == 2
        assert finished["event_count"] == last["event_count"] == last["last_seq"]
        # Over: the daemon has forgotten it.
        gone = await web.get(f"/api/history/runs/{run['id']}")
        assert gone.status_code == 404
        assert (await web.get("/api/history/runs")).json()["runs"] == []
    assert repo.status_of("top/01-second.md") == "complete"
    assert "run completed" in output and "warning" not in output
    assert f"run {run['id']}" in output, "the run's id is shown, to find it in the live view"
    assert History(home=daemon_process).runs() == []
    raw = database_bytes(daemon_process)
    assert raw, "the daemon has its database files"
    assert marker.encode() not in raw and run["id"].encode() not in raw
    assert not daemon_process.spool.exists() or not any(daemon_process.spool.iterdir())


async def test_a_run_without_history_outlives_its_daemon_with_one_warning_at_most(
    tmp_path: Path, daemon_process: Home
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "u/IMPLEMENTATION_PLAN.md": plan_md(),
            "u/01-kill.md": task_md(1, "Kill the daemon", "AGENT:kill-daemon"),
            "u/02-after.md": task_md(2, "After", depends_on=[1]),
        },
    )
    daemon_pid = int(daemon_process.pidfile.read_text().split()[0])
    result = await trio.run_process(
        [str(CHOO), "run", "--no-history", "specs/tasks"],
        cwd=repo.root,
        env=choo_env(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert pid_gone(daemon_pid)
    (run_id,) = re.findall(r"run (run_\w+) · live at", output)
    assert f"run {run_id}: shown live, not recorded" in daemon_process.log.read_text()
    assert output.count("warning") <= 1, output
    assert "history:" not in output, "nothing was to be recorded: no word about history"
    assert "run completed" in output
    assert repo.status_of("u/02-after.md") == "complete"
    # Nothing kept for a later daemon (a spool is history), and none started for it.
    assert not daemon_process.spool.exists() or not any(daemon_process.spool.iterdir())
    status = await trio.run_process(
        [str(CHOO), "daemon", "status"], capture_stdout=True, capture_stderr=True, check=False
    )
    assert status.returncode == 1, "no daemon was started again for a run that records nothing"
