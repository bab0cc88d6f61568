"""The scheduler: units in dependency order, up to ``parallelism`` at once.

A unit is queued as soon as all its dependencies are done, and started when
a slot is free. A failed unit blocks every unit that depends on it,
directly or not (``unit.blocked`` names the unit that failed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from choo.orchestrator.discovery import Plan, Unit
from choo.orchestrator.events import EventBus
from choo.orchestrator.graph import Graph, dependents, ready_units


@dataclass
class Tally:
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


async def schedule(
    plan: Plan,
    graph: Graph,
    bus: EventBus,
    parallelism: int,
    run_unit: Callable[[Unit], Awaitable[bool]],
    tally: Tally | None = None,
) -> Tally:
    """Run every unit of ``plan`` not already done; returns who ended how.

    Units whose tasks are all complete already (a resumed run) count as done
    without running again. ``tally`` is filled in place, so a caller that is
    cancelled half-way still knows where things stood.
    """
    tally = tally if tally is not None else Tally()
    tally.done |= {
        u.id for u in plan.units.values() if all(t.status == "complete" for t in u.tasks)
    }
    slots = trio.CapacityLimiter(parallelism)
    finished_send, finished = trio.open_memory_channel[tuple[str, bool]](len(plan.units))
    queued: set[str] = set()

    async def work(unit: Unit) -> None:
        async with slots:
            tally.running.add(unit.id)
            ok = await run_unit(unit)
        await finished_send.send((unit.id, ok))

    async with trio.open_nursery() as nursery:
        while True:
            for unit_id in ready_units(
                graph, tally.done, queued, tally.blocked, failed=tally.failed
            ):
                queued.add(unit_id)
                unit = plan.units[unit_id]
                bus.emit(
                    "unit.queued",
                    unit=unit_id,
                    level=graph.level_of(unit_id),
                    tasks=len(unit.tasks),
                    depends_on=list(unit.depends_on),
                )
                nursery.start_soon(work, unit)
            if not (queued - tally.done - tally.failed):
                break
            unit_id, ok = await finished.receive()
            tally.running.discard(unit_id)
            if ok:
                tally.done.add(unit_id)
            else:
                tally.failed.add(unit_id)
                _block(plan, graph, bus, unit_id, tally)
    return tally


def _block(plan: Plan, graph: Graph, bus: EventBus, failed: str, tally: Tally) -> None:
    for unit_id in sorted(dependents(graph, failed), key=lambda u: (graph.level_of(u), u)):
        if unit_id in tally.blocked or unit_id in tally.done:
            continue
        tally.blocked.add(unit_id)
        bus.emit(
            "unit.blocked",
            unit=unit_id,
            blocked_by=failed,
            depends_on=list(plan.units[unit_id].depends_on),
        )
