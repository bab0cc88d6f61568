"""The event catalogue and unit outcomes the UI gets from the API, and keeps no copy of."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from protocol.events import EVENT_TYPES, catalogue_dict
from protocol.home import Home
from tests.daemon.test_session import Peer
from tests.web.support import History, ev
from tests.web.test_live_only import GRAPH, RUN, acked, live_start, reply

STATIC = Path(__file__).resolve().parents[2] / "choo_web" / "static"

# Files allowed to name an event type, and why. Keep it empty: the UI asks
# GET /api/event-types what a type means (eventtypes.js).
EXCEPTIONS: dict[str, str] = {}


def test_the_ui_names_no_event_type() -> None:
    """A type named in the UI (a list, a table, a test of one type) is a second home for it."""
    names = re.compile(
        r"(?<![\w$.])(" + "|".join(re.escape(t) for t in EVENT_TYPES) + r")(?![\w$])"
    )
    sources = sorted([*STATIC.glob("*.js"), *STATIC.glob("*.html")])
    assert len(sources) > 10 and any(p.name == "eventtypes.js" for p in sources)
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sources
        if path.name not in EXCEPTIONS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if names.search(line)
    ]
    assert found == [], "event types named in the UI; look them up in eventtypes.js instead"


async def test_the_catalogue_is_served(web: httpx.AsyncClient) -> None:
    response = await web.get("/api/event-types")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    assert served == catalogue_dict()
    assert [t["name"] for t in served["types"]] == list(EVENT_TYPES)
    started = next(t for t in served["types"] if t["name"] == "unit.started")
    assert started == {
        "name": "unit.started",
        "kind": "unit",
        "payload": ["base", "branch", "pending", "provider", "tasks", "worktree"],
        "unit_status": "running",
        "task_done": False,
        "marker": None,
        "graph": False,
    }
    assert served["kinds"] == ["orch", "unit", "task", "run"]
    assert served["unit_finished"] == ["completed", "failed", "blocked"]


async def test_unit_outcomes_are_folded_by_the_server(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_units")
    await history.graph("run_units")  # u1, u2, u3 (no task counts)
    url = "/api/history/runs/run_u/units"  # a prefix will do
    assert (await web.get(url)).json() == {
        "run_id": "run_units",
        "run_status": "running",
        "seq": 0,
        "units": [
            {
                "unit": u,
                "status": "pending",
                "tasks": 0,
                "done": 0,
                "starts": 0,
                "started_at": None,
                "finished_at": None,
                "duration_ms": None,
                "blocked_by": None,
                "reason": None,
                "attempts": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "cost_usd": 0.0,
                "cost_estimated": False,
                "tool_calls": 0,
            }
            for u in ("u1", "u2", "u3")
        ],
    }
    run = "run_units"
    await history.send(
        [
            ev(run, 1, "unit.queued", unit="u1", payload={"tasks": 2}),
            ev(run, 2, "unit.started", unit="u1", payload={"tasks": 2, "pending": 2}),
            ev(run, 3, "task.started", unit="u1", task=1),
            ev(run, 4, "task.completed", unit="u1", task=1),
            ev(run, 5, "unit.queued", unit="u2"),
            ev(run, 6, "unit.started", unit="u9", payload={"tasks": 1, "pending": 1}),
            ev(run, 7, "task.completed", unit="u9", task=1),
            ev(run, 8, "unit.completed", unit="u9", payload={"duration_ms": 5}),
        ]
    )
    body = (await web.get(url)).json()
    assert body["seq"] == 8 and body["run_status"] == "running"
    shown = {u["unit"]: (u["status"], u["done"], u["tasks"]) for u in body["units"]}
    assert shown == {
        "u1": ("running", 1, 2),
        "u2": ("queued", 0, 0),
        "u3": ("pending", 0, 0),
        "u9": ("completed", 1, 1),
    }
    await history.complete(run, "stopped")
    body = (await web.get(url)).json()
    shown = {u["unit"]: u["status"] for u in body["units"]}
    assert shown == {"u1": "stopped", "u2": "stopped", "u3": "pending", "u9": "completed"}
    missing = await web.get("/api/history/runs/run_nowhere/units")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_run"


async def test_a_run_that_is_not_recorded_has_its_units_too(
    home: Home, web: httpx.AsyncClient
) -> None:
    peer = await Peer.connect(home)
    await peer.send(live_start(RUN))
    assert (await reply(peer, 1))["t"] == "ok"
    await peer.send({"t": "run.graph", "req": 2, "run": RUN, **GRAPH})
    assert (await reply(peer, 2))["t"] == "ok"
    await peer.send(
        ev(RUN, 1, "unit.started", unit="u1", payload={"tasks": 2, "pending": 1}),
        ev(RUN, 2, "task.completed", unit="u1", task=2),
        ev(RUN, 3, "unit.blocked", unit="u2", payload={"blocked_by": "u1"}),
    )
    await acked(peer, RUN, 3)
    body = (await web.get(f"/api/history/runs/{RUN}/units")).json()
    assert body["seq"] == 3
    shown = {u["unit"]: (u["status"], u["done"], u["tasks"]) for u in body["units"]}
    assert shown == {"u1": ("running", 2, 2), "u2": ("blocked", 0, 0)}
