"""The event catalogue, and fold_units: the unit states the UI and ``choo history show`` show.

The expectations are those of the browser tests (tests/browser/test_live.py,
test_run.py) and of ``choo history show`` (tests/choo/test_history_cli.py),
which the UI's own fold in units.js and history.py's used to meet.
"""

from __future__ import annotations

import json
import random
from typing import Any

from protocol.events import (
    BY_NAME,
    CATALOGUE,
    EVENT_TYPES,
    KINDS,
    MARKER_TYPES,
    RUN_RESUMED,
    RUN_STOPPED,
    UNIT_EVENT_TYPES,
    UNIT_STATUSES,
    allowed_payload_keys,
    catalogue_dict,
    fold_units,
)

NODES = [{"id": u, "tasks": n} for u, n in [("config", 2), ("models", 2), ("storage", 1)]]


class Run:
    def __init__(self) -> None:
        self.seq = 0
        self.events: list[dict[str, Any]] = []

    def e(self, type: str, unit: str | None = None, task: int | None = None, **payload: Any) -> Run:
        assert type in BY_NAME, type
        self.seq += 1
        error = payload.pop("error", None)
        self.events.append(
            {
                "seq": self.seq,
                "time": f"2026-03-01T12:00:{self.seq:02d}.000Z",
                "type": type,
                "unit": unit,
                "task": task,
                "payload": payload or None,
                "error": error,
            }
        )
        return self

    def unit(self, unit: str, tasks: int, *, fail_task: int | None = None) -> Run:
        self.e("unit.queued", unit, tasks=tasks).e("unit.started", unit, tasks=tasks, pending=tasks)
        for task in range(1, tasks + 1):
            self.e("task.started", unit, task)
            if task == fail_task:
                return self.e("task.failed", unit, task).e("unit.failed", unit, error="it failed")
            self.e("task.completed", unit, task)
        return self.e("unit.completed", unit, tasks=tasks, duration_ms=2600)


def states(nodes: list[dict[str, Any]], run: Run, status: str) -> dict[str, tuple[str, int, int]]:
    return {
        u["unit"]: (u["status"], u["done"], u["tasks"])
        for u in fold_units(nodes, run.events, status)
    }


def test_the_catalogue_is_consistent() -> None:
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES) == len(CATALOGUE)
    assert KINDS == ("orch", "unit", "task", "run")
    assert all(t.payload for t in CATALOGUE), "every event type keeps something"
    assert all(t.unit_status in (None, *UNIT_STATUSES) for t in CATALOGUE)
    assert set(MARKER_TYPES) == {RUN_STOPPED, RUN_RESUMED}
    assert BY_NAME[RUN_STOPPED].marker == "stop" and BY_NAME[RUN_RESUMED].marker == "resume"
    assert set(UNIT_EVENT_TYPES) == {
        "unit.queued",
        "unit.started",
        "unit.completed",
        "unit.failed",
        "unit.blocked",
        "task.completed",
    }
    assert allowed_payload_keys("unit.started") == {
        "tasks",
        "pending",
        "provider",
        "worktree",
        "branch",
        "base",
    }
    assert allowed_payload_keys("no.such.type") == frozenset()
    served = json.loads(json.dumps(catalogue_dict()))
    assert [t["name"] for t in served["types"]] == list(EVENT_TYPES)
    assert served["unit_statuses"][0] == "pending"


def test_a_live_run_as_the_graph_showed_it() -> None:
    # tests/browser/test_live.py: the same events, the same node states.
    run = Run().e("orch.started").unit("config", 2)
    assert states(NODES, run, "running")["config"] == ("completed", 2, 2)
    run.e("unit.queued", "models", tasks=2).e("unit.started", "models", tasks=2, pending=2)
    run.e("task.started", "models", 1).e("task.completed", "models", 1)
    shown = states(NODES, run, "running")
    assert shown["models"] == ("running", 1, 2)
    assert shown["storage"] == ("pending", 0, 1)
    run.e("task.failed", "models", 2).e("unit.failed", "models")
    for unit in ("api", "cli", "docs"):
        run.e("unit.blocked", unit, blocked_by="models")
    shown = states(NODES, run, "failed")
    assert shown["models"] == ("failed", 1, 2)
    assert shown["docs"] == ("blocked", 0, 0)
    assert shown["storage"] == ("pending", 0, 1)
    assert list(shown) == ["config", "models", "storage", "api", "cli", "docs"]


def test_show_gives_each_units_outcome() -> None:
    # tests/choo/test_history_cli.py's run_a3: stopped, resumed, then one of each.
    nodes = [{"id": "base", "tasks": 1}, {"id": "mid", "tasks": 2}, {"id": "top", "tasks": 1}]
    run = Run().e("orch.started").e("unit.queued", "base", tasks=1)
    run.e("unit.started", "base", tasks=1, pending=1).e(RUN_STOPPED, reason="SIGINT received")
    run.e(RUN_RESUMED, reason="resumed with `choo resume`").unit("base", 1)
    run.unit("mid", 2, fail_task=2).e("unit.blocked", "top", blocked_by="mid")
    outcomes = {u["unit"]: u for u in fold_units(nodes, run.events, "failed")}
    assert {u: (o["status"], o["done"], o["tasks"]) for u, o in outcomes.items()} == {
        "base": ("completed", 1, 1),
        "mid": ("failed", 1, 2),
        "top": ("blocked", 0, 1),
    }
    assert outcomes["base"]["starts"] == 2 and outcomes["base"]["duration_ms"] == 2600
    assert outcomes["mid"]["reason"] == "it failed" and outcomes["mid"]["finished_at"]
    assert outcomes["top"]["blocked_by"] == "mid"


def test_a_finished_run_leaves_nothing_running() -> None:
    run = Run().e("unit.queued", "config", tasks=2).e("unit.queued", "models", tasks=2)
    run.e("unit.started", "config", tasks=2, pending=2).e("task.completed", "config", 1)
    shown = states(NODES, run, "stopped")
    assert shown == {
        "config": ("stopped", 1, 2),
        "models": ("stopped", 0, 2),
        "storage": ("pending", 0, 1),
    }
    assert states(NODES, run, "running")["config"] == ("running", 1, 2)


def test_a_resumed_unit_counts_the_tasks_done_before() -> None:
    # A resume's unit.started says how many tasks were left: those done before count.
    nodes = [{"id": "config", "tasks": 3, "done": 1}]
    run = Run()
    assert states(nodes, run, "running")["config"] == ("pending", 1, 3)
    run.e("unit.started", "config", tasks=3, pending=3).e("task.completed", "config", 1)
    run.e("unit.started", "config", tasks=3, pending=1)
    assert states(nodes, run, "running")["config"] == ("running", 2, 3)
    run.e("task.completed", "config", 3)
    assert states(nodes, run, "running")["config"] == ("running", 3, 3)
    run.e("task.completed", "config", 3)  # the same task twice counts once
    run.e("task.completed", "config", None)  # and one without a task not at all
    assert states(nodes, run, "running")["config"] == ("running", 3, 3)


def test_order_and_repeats_do_not_matter() -> None:
    run = Run().unit("config", 2).unit("models", 2, fail_task=2).e("unit.blocked", "storage")
    expected = states(NODES, run, "failed")
    shuffled = run.events + run.events[:5]
    random.Random(7).shuffle(shuffled)
    assert fold_units(NODES, shuffled, "failed") == fold_units(NODES, run.events, "failed")
    assert expected["storage"] == ("blocked", 0, 1)


def test_a_completed_unit_shows_every_task_done_and_odd_graphs_are_skipped() -> None:
    run = Run().e("unit.started", "config").e("unit.completed", "config")
    nodes: list[Any] = [{"id": "config", "tasks": 2}, "not a node", {"tasks": 1}]
    assert states(nodes, run, "completed") == {"config": ("completed", 2, 2)}
