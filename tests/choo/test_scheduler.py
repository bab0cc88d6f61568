"""The scheduler: parallelism, dependency order, transitive blocking (trio, virtual time)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from choo.orchestrator.discovery import Plan, Task, Unit
from choo.orchestrator.events import Event, EventBus
from choo.orchestrator.graph import build_graph
from choo.orchestrator.scheduler import Tally, schedule

ROOT = Path("/nowhere")


def plan_of(deps: dict[str, list[str]], complete: frozenset[str] = frozenset()) -> Plan:
    """One task per unit; units in ``complete`` have theirs done already."""
    units = {}
    for unit_id in sorted(deps):
        task = Task(
            unit=unit_id,
            number=1,
            title=f"{unit_id} task",
            status="complete" if unit_id in complete else "pending",
            depends_on=(),
            backpressure=None,
            path=ROOT / unit_id / "01-task.md",
            body="",
        )
        units[unit_id] = Unit(unit_id, ROOT / unit_id, tuple(deps[unit_id]), None, (task,))
    return Plan(ROOT, units)


class Recorder:
    """A run_unit that takes ``durations[unit]`` seconds and fails the units in ``failing``."""

    def __init__(self, durations: dict[str, float] | None = None, failing: set[str] | None = None):
        self.durations = durations or {}
        self.failing = failing or set()
        self.active = 0
        self.max_active = 0
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}

    async def run_unit(self, unit: Unit) -> bool:
        assert unit.id not in self.started, f"{unit.id} ran twice"
        self.started[unit.id] = trio.current_time()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await trio.sleep(self.durations.get(unit.id, 1.0))
        finally:
            self.active -= 1
        self.finished[unit.id] = trio.current_time()
        return unit.id not in self.failing


async def run(
    plan: Plan, parallelism: int, run_unit: Callable[[Unit], Awaitable[bool]]
) -> tuple[Tally, list[Event]]:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    tally = await schedule(plan, build_graph(plan), bus, parallelism, run_unit)
    return tally, events


@pytest.mark.parametrize("parallelism", [1, 2, 3, 8])
async def test_at_most_parallelism_units_at_once(
    parallelism: int, autojump_clock: trio.testing.MockClock
) -> None:
    plan = plan_of({f"u{i}": [] for i in range(6)})
    work = Recorder()
    tally, _ = await run(plan, parallelism, work.run_unit)
    assert work.max_active == min(parallelism, 6)
    assert tally.done == set(plan.units)
    # Six one-second units, N at a time: the slots are never left idle.
    assert trio.current_time() == pytest.approx(-(-6 // parallelism))


async def test_units_start_only_after_their_dependencies_are_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deps = {
        "base": [],
        "left": ["base"],
        "right": ["base"],
        "top": ["left", "right"],
        "side": [],
        "after_side": ["side"],
    }
    work = Recorder(durations={"left": 3, "right": 1, "side": 0.5})
    tally, events = await run(plan_of(deps), 4, work.run_unit)
    assert tally.done == set(deps)
    for unit, needs in deps.items():
        for dep in needs:
            assert work.started[unit] >= work.finished[dep], (unit, dep)
    # top waits for the slow `left`, not just the first of its dependencies to finish.
    assert work.started["top"] == pytest.approx(work.finished["left"])
    queued = [e.unit or "" for e in events if e.type == "unit.queued"]
    assert sorted(queued) == sorted(deps), "each unit is queued exactly once"
    top = next(e for e in events if e.type == "unit.queued" and e.unit == "top")
    assert top.payload == {"level": 2, "tasks": 1, "depends_on": ["left", "right"]}


async def test_a_failure_blocks_dependents_transitively_and_others_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deps = {
        "a": [],
        "b": ["a"],
        "c": ["b"],
        "d": ["c", "e"],
        "e": [],
        "f": ["e"],
    }
    # `e` is still running when `a` fails; it and its own dependent go on.
    work = Recorder(durations={"a": 1, "e": 5, "f": 1}, failing={"a"})
    tally, events = await run(plan_of(deps), 2, work.run_unit)

    assert tally.failed == {"a"}
    assert tally.blocked == {"b", "c", "d"}
    assert tally.done == {"e", "f"}
    assert not tally.ok
    assert set(work.started) == {"a", "e", "f"}, "blocked units never run"
    assert work.finished["f"] == pytest.approx(6.0)
    blocked = [e for e in events if e.type == "unit.blocked"]
    assert sorted(e.unit or "" for e in blocked) == ["b", "c", "d"]
    for event in blocked:
        assert event.payload["blocked_by"] == "a"
        assert event.payload["depends_on"] == deps[event.unit or ""]


async def test_a_unit_blocked_by_two_failures_is_blocked_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deps = {"x": [], "y": [], "z": ["x", "y"]}
    work = Recorder(durations={"x": 1, "y": 2}, failing={"x", "y"})
    tally, events = await run(plan_of(deps), 2, work.run_unit)
    assert tally.failed == {"x", "y"}
    assert tally.blocked == {"z"}
    blocked = [e for e in events if e.type == "unit.blocked"]
    assert [(e.unit, e.payload["blocked_by"]) for e in blocked] == [("z", "x")]


async def test_units_already_complete_are_not_run_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"]}
    work = Recorder()
    tally, events = await run(plan_of(deps, complete=frozenset({"a"})), 2, work.run_unit)
    assert set(work.started) == {"b", "c"}
    assert tally.done == {"a", "b", "c"}
    assert [e.unit for e in events if e.type == "unit.queued"] == ["b", "c"]


async def test_a_cancelled_schedule_leaves_the_tally_where_things_stood(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deps = {"quick": [], "slow": [], "later": ["quick", "slow"]}
    work = Recorder(durations={"quick": 1, "slow": 10})
    tally = Tally()
    plan = plan_of(deps)
    with trio.move_on_after(5):
        await schedule(plan, build_graph(plan), EventBus(), 2, work.run_unit, tally)
    assert tally.done == {"quick"}
    assert tally.running == {"slow"}
    assert "later" not in work.started
