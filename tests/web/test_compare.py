"""GET /api/history/compare: two runs side by side, computed by the daemon."""

from __future__ import annotations

from typing import Any

import httpx

from choo_web.compare import levels, number, union_graph
from protocol.home import Home
from tests.daemon.attempts import Script
from tests.daemon.test_session import Peer
from tests.web.support import History, ev
from tests.web.test_api import error_of
from tests.web.test_live_only import GRAPH, RUN, acked, live_start, reply


def unit(kind: str, name: str, **payload: Any) -> tuple[str, str, None, dict[str, Any]]:
    return (kind, name, None, payload)


def first_run() -> Script:
    """u1 fails its validation twice; u2 passes; u3 never starts."""
    s = Script()
    s.steps.append(unit("unit.started", "u1", tasks=1, pending=1))  # type: ignore[arg-type]
    s.started("u1", 1, "Add the parser")
    s.attempt("u1", 1, 1, passed=False)
    s.retry("u1", 1, 1, "validation_failed")
    s.attempt("u1", 1, 2, passed=False, cost=0.25)
    s.failed("u1", 1, 2, "validation_failed")
    s.steps.append(unit("unit.failed", "u1", duration_ms=4000))  # type: ignore[arg-type]
    both_pass_u2(s)
    return s


def second_run() -> Script:
    """u1 passes at once; u2 as before; u4 (new in this plan) passes with no task."""
    s = Script()
    s.steps.append(unit("unit.started", "u1", tasks=1, pending=1))  # type: ignore[arg-type]
    s.started("u1", 1, "Add the parser")
    s.attempt("u1", 1, 1)
    s.completed("u1", 1, 1)
    s.steps.append(unit("unit.completed", "u1", duration_ms=2000))  # type: ignore[arg-type]
    both_pass_u2(s)
    s.steps.append(unit("unit.started", "u4", tasks=0, pending=0))  # type: ignore[arg-type]
    s.steps.append(unit("unit.completed", "u4", duration_ms=10))  # type: ignore[arg-type]
    return s


def both_pass_u2(s: Script) -> None:
    s.steps.append(unit("unit.started", "u2", tasks=1, pending=1))  # type: ignore[arg-type]
    s.started("u2", 1, "Write the docs")
    s.attempt("u2", 1, 1, cost=None, validation=None)
    s.completed("u2", 1, 1)
    s.steps.append(unit("unit.completed", "u2", duration_ms=3000))  # type: ignore[arg-type]


async def write(history: History, run: str, script: Script, repo: str = "/repo") -> None:
    await history.start(run, repo=repo)
    if run.endswith("a"):
        await history.graph(run)  # u1 <- u2 <- u3
    else:
        await history.request(
            {
                "t": "run.graph",
                "run": run,
                "nodes": [{"id": "u1"}, {"id": "u2"}, {"id": "u4"}],
                "edges": [{"from": "u2", "to": "u1"}, {"from": "u4", "to": "u2"}],
                "levels": [["u1"], ["u2"], ["u4"]],
            }
        )
    await history.send(
        [
            ev(run, seq, kind, unit=name, task=task, payload=payload)
            for seq, (kind, name, task, payload) in enumerate(script.steps, 1)
        ]
    )
    await history.complete(run)  # a finished run's roll-ups are whole


async def compared(web: httpx.AsyncClient, a: str, b: str) -> dict[str, Any]:
    response = await web.get("/api/history/compare", params={"a": a, "b": b})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_units_and_tasks_side_by_side_with_deltas(
    web: httpx.AsyncClient, history: History
) -> None:
    await write(history, "run_cmp_a", first_run())
    await write(history, "run_cmp_b", second_run())
    body = await compared(web, "run_cmp_a", "run_cmp_b")
    assert (body["a"]["id"], body["b"]["id"], body["same_repo"]) == ("run_cmp_a", "run_cmp_b", True)
    assert body["a"]["totals"]["attempts"] == 3  # the runs' own details, as /runs/{id}
    units = {u["unit"]: u for u in body["units"]}
    assert list(units) == ["u1", "u2", "u3", "u4"]  # a's order, then b's own

    u1 = units["u1"]
    assert u1["status"] == {"a": "failed", "b": "completed", "changed": True}
    assert (u1["changed"], u1["only_in"]) == (True, None)
    assert u1["attempts"] == {"a": 2, "b": 1, "delta": -1}
    assert u1["duration_ms"] == {"a": 4000, "b": 2000, "delta": -2000}
    assert u1["tokens"] == {"a": 2260, "b": 1130, "delta": -1130}
    assert u1["cost_usd"] == {"a": 0.75, "b": 0.5, "delta": -0.25}
    assert u1["stop_reasons"] == {"a": ["validation_failed"], "b": ["passed"]}

    u2 = units["u2"]
    assert (u2["changed"], u2["attempts"]["delta"], u2["tokens"]["delta"]) == (False, 0, 0)
    assert u2["cost_usd"] == {"a": None, "b": None, "delta": None}  # no agent reported one
    assert (units["u3"]["only_in"], units["u3"]["status"]["b"], units["u3"]["changed"]) == (
        "a",
        None,
        True,
    )
    assert (units["u4"]["only_in"], units["u4"]["status"]["b"]) == ("b", "completed")
    assert units["u4"]["stop_reasons"] == {"a": None, "b": None}

    tasks = {(t["unit"], t["task"]): t for t in body["tasks"]}
    assert list(tasks) == [("u1", 1), ("u2", 1)]
    t1 = tasks["u1", 1]
    assert t1["status"] == {"a": "failed", "b": "completed", "changed": True}
    assert t1["stop_reason"] == {"a": "validation_failed", "b": "passed", "changed": True}
    assert t1["stop_reasons"] == {"a": ["validation_failed", "validation_failed"], "b": ["passed"]}
    assert t1["duration_ms"] == {"a": 7000, "b": 5000, "delta": -2000}
    assert (t1["title"], t1["changed"]) == ("Add the parser", True)
    assert tasks["u2", 1]["changed"] is False
    assert body["changed"] == {"units": 3, "tasks": 1}

    run = body["run"]
    assert run["attempts"] == {"a": 3, "b": 2, "delta": -1}
    assert run["cost_usd"] == {"a": 0.75, "b": 0.5, "delta": -0.25}
    assert run["status"] == {"a": "completed", "b": "completed", "changed": False}

    # One layout for both: every unit of either run, every edge, levels by longest path.
    graph = body["graph"]
    assert [n["id"] for n in graph["nodes"]] == ["u1", "u2", "u3", "u4"]
    assert {(e["from"], e["to"]) for e in graph["edges"]} == {
        ("u2", "u1"),
        ("u3", "u2"),
        ("u4", "u2"),
    }
    assert graph["levels"] == [["u1"], ["u2"], ["u3", "u4"]]

    # The other way round, every delta turns over.
    back = await compared(web, "run_cmp_b", "run_cmp_a")
    assert back["units"][0]["unit"] == "u1" and back["units"][0]["attempts"]["delta"] == 1
    assert {u["unit"]: u["only_in"] for u in back["units"]}["u3"] == "b"


async def test_errors_name_the_run_and_the_parameter(
    web: httpx.AsyncClient, history: History
) -> None:
    await write(history, "run_err_a", first_run())
    await write(history, "run_err_b", second_run(), repo="/elsewhere")
    message = await error_of(
        await web.get("/api/history/compare", params={"a": "run_err_a", "b": "run_nope"}),
        404,
        "unknown_run",
    )
    assert message.startswith("b: no run 'run_nope'") and "choo history list" in message
    message = await error_of(
        await web.get("/api/history/compare", params={"a": "run_err"}), 400, "bad_parameter"
    )
    assert "bad b ''" in message and "?a=RUN&b=RUN" in message
    message = await error_of(
        await web.get("/api/history/compare", params={"a": "run_err_", "b": "run_err_b"}),
        400,
        "ambiguous_run",
    )
    assert message.startswith("a: run id prefix 'run_err_'")
    # Runs of two repositories can be compared; the answer says they are.
    body = await compared(web, "run_err_a", "run_err_b")
    assert body["same_repo"] is False and body["b"]["repo_path"] == "/elsewhere"


def test_levels_and_union_graph_take_any_shape() -> None:
    edges = [{"from": "b", "to": "a"}, {"from": "c", "to": "d"}, {"from": "d", "to": "c"}]
    # a cycle's units go together, after the rest
    assert levels(["a", "b", "c", "d"], edges) == [["a"], ["b"], ["c", "d"]]
    assert union_graph(None, None, ["a"]) is None
    odd = {"nodes": [{"id": "x"}, "junk", {"id": 3}], "edges": [{"from": "x", "to": 5}]}
    assert union_graph(odd, None, ["x", "y"]) == {
        "nodes": [{"id": "x"}, {"id": "y"}],  # y: a unit of the events, in no graph
        "edges": [],
        "levels": [["x", "y"]],
    }
    assert number(0.1, 0.3) == {"a": 0.1, "b": 0.3, "delta": 0.2}  # not 0.19999999999999998
    assert number(True, 2)["delta"] is None and number(None, 2)["delta"] is None


async def test_a_run_not_recorded_is_compared_while_it_runs(
    home: Home, web: httpx.AsyncClient, history: History
) -> None:
    await write(history, "run_cmp_a", first_run())
    peer = await Peer.connect(home)
    await peer.send(live_start(RUN))
    assert (await reply(peer, 1))["t"] == "ok"
    await peer.send({"t": "run.graph", "req": 2, "run": RUN, **GRAPH})
    assert (await reply(peer, 2))["t"] == "ok"
    await peer.send(ev(RUN, 1, "unit.started", unit="u1", payload={"tasks": 1, "pending": 1}))
    await acked(peer, RUN, 1)
    body = await compared(web, "run_cmp_a", RUN)
    assert body["b"]["history"] is False and body["same_repo"] is False
    units = {u["unit"]: u for u in body["units"]}
    assert units["u1"]["status"] == {"a": "failed", "b": "running", "changed": True}
    assert units["u1"]["attempts"] == {"a": 2, "b": 0, "delta": -2}  # no roll-ups: not recorded
    assert {t["only_in"] for t in body["tasks"]} == {"a"}
    assert [n["id"] for n in body["graph"]["nodes"]] == ["u1", "u2", "u3"]
