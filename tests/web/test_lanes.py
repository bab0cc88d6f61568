"""GET /api/history/runs/{run}/lanes: waits, runs and attempt bars per unit,
stop/resume gaps, and the critical path through the dependency graph."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from protocol.home import Home
from tests.daemon.test_session import Peer
from tests.web.support import History, at
from tests.web.test_live_only import RUN, live_start, reply

# A diamond: b and c need a, d needs b and c. c ends after b, so the path is a, c, d.
DIAMOND = {
    "nodes": [{"id": u, "tasks": 1} for u in "abcd"],
    "edges": [
        {"from": "b", "to": "a"},
        {"from": "c", "to": "a"},
        {"from": "d", "to": "b"},
        {"from": "d", "to": "c"},
    ],
    "levels": [["a"], ["b", "c"], ["d"]],
}


class Events:
    """Events of one run with times given in seconds from its start."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.seq = 0
        self.out: list[dict[str, Any]] = []

    def __call__(
        self, second: float, kind: str, unit: str | None = None, task: int | None = None, **p: Any
    ) -> int:
        self.seq += 1
        self.out.append(
            {
                "t": "event",
                "run": self.run,
                "seq": self.seq,
                "time": at(second),
                "type": kind,
                "unit": unit,
                "task": task,
                "payload": p or None,
            }
        )
        return self.seq

    def take(self) -> list[dict[str, Any]]:
        out, self.out = self.out, []
        return out


def attempt(
    e: Events, unit: str, second: float, agent: float, check: float | None, **end: Any
) -> None:
    """An attempt of task 1: invoke, agent done, validation (if ``check``), then its end."""
    n = end.pop("attempt", 1)
    e(second, "task.claude.invoke", unit, 1, attempt=n)
    e(second + agent, "task.claude.done", unit, 1, exit_code=0, duration_ms=round(agent * 1000))
    stop = second + agent
    if check is not None:
        e(stop, "task.backpressure", unit, 1, command="make check", attempt=n)
        stop += check
        kind = "task.validation.ok" if end.get("kind") != "task.retry" else "task.validation.fail"
        e(stop, kind, unit, 1, command="make check", duration_ms=round(check * 1000), attempt=n)
    kind = end.pop("kind", "task.completed")
    e(stop, kind, unit, 1, **end)


async def diamond_run(history: History, run: str) -> dict[str, int]:
    """The diamond, with a retry in a, and d stopped mid-attempt then resumed."""
    await history.start(run, units=4)
    await history.request({"t": "run.graph", "run": run, **DIAMOND})
    e = Events(run)
    seqs: dict[str, int] = {}
    e(0, "unit.queued", "a")
    e(1, "unit.started", "a")
    seqs["a"] = e(1, "task.started", "a", 1, title="Lay the base")
    attempt(e, "a", 1, 3, 1, kind="task.retry", attempt=1, stop_reason="validation_failed")
    attempt(e, "a", 5, 2, 1, attempt=2, attempts=2)
    e(9, "unit.completed", "a")
    for unit, stop in (("b", 12), ("c", 15)):
        e(9, "unit.queued", unit)
        e(10, "unit.started", unit)
        e(10, "task.started", unit, 1, title=f"Part {unit}")
        attempt(e, unit, 10, stop - 10, None, attempts=1)
        e(stop + 1, "unit.completed", unit)
    e(16, "unit.queued", "d")
    e(16.5, "unit.started", "d")
    seqs["d"] = e(16.5, "task.started", "d", 1, title="Finish")
    seqs["d1"] = e(17, "task.claude.invoke", "d", 1, attempt=1)
    seqs["stop"] = e(20, "run.stopped", reason="SIGINT received")
    await history.send(e.take())
    await history.complete(run, "stopped", ended=20)
    seqs["resume"] = e.seq = await history.resume(run, token="t1", reason="choo resume")  # at 120
    e(121, "unit.queued", "d")
    e(122, "unit.started", "d")
    e(122, "task.started", "d", 1, title="Finish")
    attempt(e, "d", 122, 3, 0.5, attempts=1)
    e(126, "unit.completed", "d")
    await history.send(e.take())
    await history.complete(run, ended=130, done=4)
    return seqs


async def test_lanes_of_a_run_with_a_retry_and_a_stop(
    web: httpx.AsyncClient, history: History
) -> None:
    seqs = await diamond_run(history, "run_lanes")
    body = (await web.get("/api/history/runs/run_la/lanes")).json()  # a prefix names it
    assert (body["run_id"], body["run_status"], body["open"]) == ("run_lanes", "completed", False)
    assert body["end_ms"] == 130_000 and body["started_at"] == at(0)
    assert body["gaps"] == [
        {
            "start_ms": 20_000,
            "end_ms": 120_000,
            "stop_seq": seqs["stop"],
            "resume_seq": seqs["resume"],
            "reason": "SIGINT received",
        }
    ]
    lanes = {lane["unit"]: lane for lane in body["lanes"]}
    assert list(lanes) == ["a", "b", "c", "d"]  # the graph's order
    a, d = lanes["a"], lanes["d"]
    assert a["waits"] == [{"start_ms": 0, "ready_ms": 0, "end_ms": 1000}]
    assert [(r["start_ms"], r["end_ms"], r["status"]) for r in a["runs"]] == [
        (1000, 9000, "completed")
    ]
    bars = [
        (
            b["attempt"],
            b["start_ms"],
            b["agent_end_ms"],
            b["validation_start_ms"],
            b["end_ms"],
            b["stop_reason"],
            b["ended"],
        )
        for b in a["bars"]
    ]
    assert bars == [
        (1, 1000, 4000, 4000, 5000, "validation_failed", "finished"),
        (2, 5000, 7000, 7000, 8000, "passed_after_retry", "finished"),
    ]
    assert {b["task_seq"] for b in a["bars"]} == {seqs["a"]}
    assert a["bars"][0]["title"] == "Lay the base"
    # d: waited for b and c, ran until the stop, waited again after the resume.
    assert d["waits"] == [
        {"start_ms": 0, "ready_ms": 16_000, "end_ms": 16_500},
        {"start_ms": 120_000, "ready_ms": 121_000, "end_ms": 122_000},
    ]
    assert [(r["start_ms"], r["end_ms"], r["status"]) for r in d["runs"]] == [
        (16_500, 20_000, "stopped"),
        (122_000, 126_000, "completed"),
    ]
    first, second = d["bars"]
    assert (first["seq"], first["start_ms"], first["end_ms"], first["ended"]) == (
        seqs["d1"],
        17_000,
        20_000,
        "stopped",
    )
    assert first["validation_start_ms"] is None and first["stop_reason"] is None
    assert (second["attempt"], second["agent_end_ms"], second["end_ms"]) == (2, 125_000, 125_500)
    assert lanes["b"]["bars"][0]["validation_start_ms"] is None  # no validation: all agent
    path = body["critical_path"]
    assert [(s["unit"], s["after"], s["tasks"]) for s in path["steps"]] == [
        ("a", None, [1]),
        ("c", "a", [1]),
        ("d", "c", [1]),
    ]
    assert [(s["start_ms"], s["end_ms"]) for s in path["steps"]] == [
        (1000, 9000),
        (10_000, 16_000),
        (16_500, 126_000),
    ]
    assert (path["duration_ms"], path["end_ms"], path["stopped_ms"]) == (126_000, 126_000, 100_000)
    assert [u for u, lane in lanes.items() if lane["critical"]] == ["a", "c", "d"]
    assert all(b["critical"] for b in d["bars"]) and not lanes["b"]["bars"][0]["critical"]


async def test_a_running_run_grows_to_now(web: httpx.AsyncClient, history: History) -> None:
    run = "run_lanes_open"
    await history.start(run, units=1)
    e = Events(run)
    e(0, "unit.queued", "solo")
    e(1, "unit.started", "solo")
    e(1, "task.started", "solo", 1, title="Long")
    e(2, "task.claude.invoke", "solo", 1, attempt=1)
    await history.send(e.take())
    with trio.fail_after(30):  # a running run's roll-ups come at the next quiet moment
        while not (body := (await web.get(f"/api/history/runs/{run}/lanes")).json())["lanes"][0][
            "bars"
        ]:
            await trio.sleep(0.02)
    assert body["open"] is True and body["end_ms"] >= 86_400_000  # the run began a day ago
    (lane,) = body["lanes"]
    assert (lane["status"], lane["runs"][0]["end_ms"]) == ("running", body["end_ms"])
    (bar,) = lane["bars"]
    assert (bar["ended"], bar["end_ms"], bar["agent_end_ms"]) == (
        "open",
        body["end_ms"],
        body["end_ms"],
    )
    # No graph: the path is the unit that ends last, alone.
    assert [s["unit"] for s in body["critical_path"]["steps"]] == ["solo"]


async def test_an_unknown_run_has_no_lanes(web: httpx.AsyncClient) -> None:
    response = await web.get("/api/history/runs/run_nowhere/lanes")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_run"


async def test_a_run_that_is_not_recorded_has_no_lanes(home: Home, web: httpx.AsyncClient) -> None:
    peer = await Peer.connect(home)
    await peer.send(live_start(RUN))
    assert (await reply(peer, 1))["t"] == "ok"
    body = (await web.get(f"/api/history/runs/{RUN}/lanes")).json()
    assert (body["run_id"], body["run_status"], body["open"]) == (RUN, "running", True)
    assert body["lanes"] == [] and body["gaps"] == []
    assert body["critical_path"]["steps"] == []


async def test_a_failed_unit_ends_the_path_and_its_dependent_waits_until_blocked(
    web: httpx.AsyncClient, history: History
) -> None:
    run = "run_lanes_failed"
    await history.start(run, units=2)
    graph = {
        "nodes": [{"id": "a"}, {"id": "b"}],
        "edges": [{"from": "b", "to": "a"}],
        "levels": [["a"], ["b"]],
    }
    await history.request({"t": "run.graph", "run": run, **graph})
    e = Events(run)
    e(0, "unit.queued", "a")
    e(2, "unit.started", "a")
    e(2, "task.started", "a", 1, title="Breaks")
    attempt(e, "a", 2, 1, 1, kind="task.failed", attempts=1, stop_reason="validation_failed")
    e(5, "unit.failed", "a")
    e(5, "unit.blocked", "b", blocked_by="a")
    await history.send(e.take())
    await history.complete(run, "failed", ended=6, done=0)
    body = (await web.get(f"/api/history/runs/{run}/lanes")).json()
    a, b = body["lanes"]
    assert (a["status"], a["waits"]) == ("failed", [{"start_ms": 0, "ready_ms": 0, "end_ms": 2000}])
    assert [(r["end_ms"], r["status"]) for r in a["runs"]] == [(5000, "failed")]
    assert [(x["stop_reason"], x["end_ms"]) for x in a["bars"]] == [("validation_failed", 4000)]
    assert (b["status"], b["runs"], b["bars"]) == ("blocked", [], [])
    assert b["waits"] == [{"start_ms": 0, "ready_ms": None, "end_ms": 5000}]
    path = body["critical_path"]
    assert [(s["unit"], s["after"]) for s in path["steps"]] == [("a", None)]
    assert (path["duration_ms"], path["stopped_ms"], body["gaps"]) == (5000, 0, [])
