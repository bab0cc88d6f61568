"""The roll-ups the API serves: run totals, per unit, per task and attempt, across runs."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from protocol.home import Home
from tests.daemon.attempts import Script
from tests.daemon.test_rollups import TOTALS, retried_task
from tests.daemon.test_session import Peer
from tests.web.support import History, ev
from tests.web.test_live_only import GRAPH, RUN, acked, live_start, reply


def messages(run: str, script: Script, first_seq: int = 1) -> list[dict[str, Any]]:
    return [
        ev(run, seq, kind, unit=unit, task=task, payload=payload)
        for seq, (kind, unit, task, payload) in enumerate(script.steps, first_seq)
    ]


async def test_run_detail_and_list_carry_totals_and_cost(
    web: httpx.AsyncClient, history: History
) -> None:
    # A running run's roll-ups are added up once the daemon has a quiet
    # moment after its events: they catch up without the run ending.
    await history.start("run_costly")
    await history.send(messages("run_costly", retried_task()))
    with trio.fail_after(30):
        while (detail := (await web.get("/api/history/runs/run_costly")).json())[
            "totals"
        ] != TOTALS:
            await trio.sleep(0.02)
    assert (detail["cost_usd"], detail["cost_estimated"]) == (0.75, True)
    listed = (await web.get("/api/history/runs")).json()["runs"]
    assert [(r["id"], r["cost_usd"], r["cost_estimated"]) for r in listed] == [
        ("run_costly", 0.75, True)
    ]


async def test_units_add_their_roll_ups(web: httpx.AsyncClient, history: History) -> None:
    run = "run_units"
    await history.start(run)
    await history.graph(run)
    await history.send(messages(run, retried_task()))
    await history.complete(run)  # a finished run's roll-ups are whole
    units = {
        u["unit"]: u for u in (await web.get(f"/api/history/runs/{run}/units")).json()["units"]
    }
    assert {k: units["u1"][k] for k in TOTALS if k != "agent_ms"} == {
        "input_tokens": 110,
        "output_tokens": 22,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 10,
        "cost_usd": 0.75,
        "cost_estimated": True,
        "attempts": 2,
        "tool_calls": 4,
    }
    assert units["u2"]["attempts"] == 1 and units["u2"]["cost_usd"] == 0  # none reported
    assert units["u3"]["attempts"] == 0 and units["u3"]["cost_estimated"] is False
    assert "duration_ms" in units["u3"]


async def test_tasks_and_attempts_with_tool_calls(web: httpx.AsyncClient, history: History) -> None:
    run = "run_tasks"
    await history.start(run)
    await history.send(messages(run, retried_task()))
    await history.complete(run)
    body = (await web.get(f"/api/history/runs/{run}/tasks")).json()
    assert body["run_id"] == run
    assert [(t["unit"], t["task"], t["title"], t["flaky"]) for t in body["tasks"]] == [
        ("u1", 1, "Add the parser", True),
        ("u2", 1, "Write the docs", False),
    ]
    attempts = body["tasks"][0]["attempts"]
    assert [(a["attempt"], a["stop_reason"], a["tool_calls"]) for a in attempts] == [
        (1, "validation_failed", 3),
        (2, "passed_after_retry", 1),
    ]
    assert attempts[0]["validation_output"] == "FAILED test_x"
    assert "tools" not in attempts[0]
    narrow = await web.get(f"/api/history/runs/{run[:6]}/tasks", params={"unit": "u1", "task": 1})
    (task,) = narrow.json()["tasks"]
    first = task["attempts"][0]
    assert [t["target"] for t in first["tools"]] == ["cmd 1.0", "cmd 1.1", "cmd 1.2"]
    assert first["tools_more"] == 0
    assert set(first["tools"][0]) == {"seq", "tool", "target", "exit_code", "is_error"}
    unit_only = (await web.get(f"/api/history/runs/{run}/tasks", params={"unit": "u2"})).json()
    assert [t["unit"] for t in unit_only["tasks"]] == ["u2"]
    bad = await web.get(f"/api/history/runs/{run}/tasks", params={"task": "1"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_parameter"
    bad = await web.get(f"/api/history/runs/{run}/tasks", params={"unit": "u1", "task": "x"})
    assert bad.status_code == 400
    missing = await web.get("/api/history/runs/run_nowhere/tasks", params={"task": "1"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_run"


async def test_the_cross_run_task_table(web: httpx.AsyncClient, history: History) -> None:
    for n in range(3):
        run = f"run_table_{n}"
        await history.start(run, repo="/repo/t", started=n)
        await history.send(messages(run, retried_task()))
        await history.complete(run)
    body = (await web.get("/api/history/tasks", params={"repo": "/repo/t", "last": 2})).json()
    assert body["repo"] == "/repo/t" and body["total"] == 2
    flaky, steady = body["tasks"]
    assert (flaky["unit"], flaky["task"], flaky["title"], flaky["flaky_runs"]) == (
        "u1",
        1,
        "Add the parser",
        3,
    )
    assert flaky["runs"] == 3 and flaky["first_try_pass_rate"] == 0.0
    assert [o["run_id"] for o in flaky["last"]] == ["run_table_2", "run_table_1"]
    assert (steady["first_try_pass_rate"], steady["median_cost_usd"]) == (1.0, 0)
    assert steady["median_tokens"] == 1130 and steady["median_duration_ms"] == 5000
    limited = (await web.get("/api/history/tasks", params={"repo": "/repo/t", "limit": 1})).json()
    assert [t["unit"] for t in limited["tasks"]] == ["u1"]
    for query in ({}, {"repo": "/repo/t", "limit": "0"}, {"repo": "/repo/t", "last": "x"}):
        refused = await web.get("/api/history/tasks", params=query)
        assert refused.status_code == 400, query
    empty = (await web.get("/api/history/tasks", params={"repo": "/nowhere"})).json()
    assert empty == {"repo": "/nowhere", "tasks": [], "total": 0}


async def test_a_run_that_is_not_recorded_has_empty_roll_ups(
    home: Home, web: httpx.AsyncClient
) -> None:
    peer = await Peer.connect(home)
    await peer.send(live_start(RUN))
    assert (await reply(peer, 1))["t"] == "ok"
    await peer.send({"t": "run.graph", "req": 2, "run": RUN, **GRAPH})
    assert (await reply(peer, 2))["t"] == "ok"
    await peer.send(*messages(RUN, retried_task()))
    await acked(peer, RUN, len(retried_task().steps))
    detail = (await web.get(f"/api/history/runs/{RUN}")).json()
    assert detail["totals"]["attempts"] == 0 and detail["cost_usd"] == 0
    units = (await web.get(f"/api/history/runs/{RUN}/units")).json()["units"]
    assert [(u["unit"], u["attempts"], u["cost_usd"]) for u in units] == [
        ("u1", 0, 0),
        ("u2", 0, 0),
    ]
    tasks = await web.get(f"/api/history/runs/{RUN}/tasks", params={"unit": "u1", "task": 1})
    assert tasks.json() == {"run_id": RUN, "tasks": []}


async def test_a_finished_runs_roll_ups_are_kept_until_the_run_changes(
    web: httpx.AsyncClient, history: History
) -> None:
    """/units and /tasks of an ended run are computed once and given again (the
    health's roll_ups.hits count them), and not once the run is resumed."""
    run = "run_kept"

    async def hits() -> int:
        count: int = (await web.get("/api/health")).json()["roll_ups"]["hits"]
        return count

    async def tasks() -> list[tuple[str, int, int]]:
        body = (await web.get(f"/api/history/runs/{run}/tasks")).json()
        return [(t["unit"], t["task"], len(t["attempts"])) for t in body["tasks"]]

    async def units() -> list[str]:
        body = (await web.get(f"/api/history/runs/{run}/units")).json()
        return [u["unit"] for u in body["units"]]

    await history.start(run)
    steps = retried_task()
    await history.send(messages(run, steps))
    with trio.fail_after(30):  # running: read afresh, until the quiet moment's fold shows
        while await tasks() != [("u1", 1, 2), ("u2", 1, 1)]:
            await trio.sleep(0.02)
    assert await hits() == 0
    await history.complete(run, "stopped")
    before = await hits()
    assert await tasks() == await tasks() == [("u1", 1, 2), ("u2", 1, 1)]
    assert await units() == await units() == ["u1", "u2"]
    assert await hits() == before + 2

    last = await history.resume(run, token="t1")
    more = Script()
    more.started("u3", 1, "Ship it")
    more.attempt("u3", 1, 1)
    more.completed("u3", 1, 1)
    await history.send(messages(run, more, first_seq=last + 1))
    with trio.fail_after(30):  # a kept answer would never show u3
        while await tasks() != [("u1", 1, 2), ("u2", 1, 1), ("u3", 1, 1)]:
            await trio.sleep(0.02)
    assert await units() == ["u1", "u2", "u3"]
    await history.complete(run)
    assert await tasks() == [("u1", 1, 2), ("u2", 1, 1), ("u3", 1, 1)]
    assert await units() == ["u1", "u2", "u3"]
