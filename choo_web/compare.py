"""Two runs side by side, as ``GET /api/history/compare?a=&b=`` serves it.

Each run is read as its own routes read it: its detail, its units'
outcomes (``units.unit_outcomes``) and its tasks' sums (the store's
``run_task_sums``), then the two are set side by side here, on the server,
so that neither the browser nor ``choo history diff`` works a delta out
again. Deltas are ``b - a`` (``a`` the earlier run, by convention), null
when either side is unknown. Units and tasks of only one run say which
(``only_in``). The graph served is the union of both runs' graphs, so the
page can draw both in the same layout.

Runs of two repositories may be compared (a plan run in two clones is
still one plan); ``same_repo`` says whether they are of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from choo_web.errors import bad_parameter
from choo_web.sources import HistoryReader
from choo_web.units import unit_outcomes
from protocol.errors import NOT_FOUND, Refusal

SIDES = ("a", "b")
# The run summary's figures compared, from its detail (or its totals).
RUN_NUMBERS = (
    "duration_ms",
    "total_units",
    "completed_units",
    "failed_units",
    "blocked_units",
    "resume_count",
    "event_count",
)
TOTAL_NUMBERS = ("attempts", "agent_ms", "tool_calls")


@dataclass(frozen=True)
class Side:
    """One run as compared: its detail, units' outcomes, tasks' sums and graph."""

    detail: dict[str, Any]
    units: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    graph: dict[str, Any] | None


async def compare_runs(reader: HistoryReader, a: str | None, b: str | None) -> dict[str, Any]:
    """The RunCompare of the runs ``a`` and ``b`` name (ids or unique prefixes)."""
    for name, value in zip(SIDES, (a, b), strict=True):
        if value is None:
            raise bad_parameter(name, "", "a run id or a unique prefix of one (?a=RUN&b=RUN)")
    assert a is not None and b is not None
    first = await read_side(reader, "a", a)
    second = await read_side(reader, "b", b)
    return compare(first, second)


async def read_side(reader: HistoryReader, name: str, run: str) -> Side:
    """What the comparison needs of one run; a refusal names the side (``b``) it is about."""
    try:
        detail = await reader.run_detail(run)
    except Refusal as exc:
        raise Refusal(f"{name}: {exc.message}", code=exc.code, kind=exc.kind) from None
    run_id = detail["id"]
    units = (await unit_outcomes(reader, run_id))["units"]
    tasks = (await reader.run_task_sums(run_id))["tasks"]
    graph = None
    if detail["has_graph"]:
        try:
            graph = await reader.run_graph(run_id)
        except Refusal as gone:  # deleted since (retention): compared without one
            if gone.kind != NOT_FOUND:
                raise
    return Side(detail, units, tasks, graph)


def compare(a: Side, b: Side) -> dict[str, Any]:
    """Both runs, their figures with deltas, each unit and task side by side, the union graph."""
    units = compare_units(a, b)
    tasks = compare_tasks(a, b)
    return {
        "a": a.detail,
        "b": b.detail,
        "same_repo": a.detail["repo_path"] == b.detail["repo_path"],
        "run": compare_summary(a, b),
        "units": units,
        "tasks": tasks,
        "changed": {
            "units": sum(1 for u in units if u["changed"]),
            "tasks": sum(1 for t in tasks if t["changed"]),
        },
        "graph": union_graph(a.graph, b.graph, [u["unit"] for u in units]),
    }


# -- pairs -----------------------------------------------------------------------


def number(a: Any, b: Any) -> dict[str, Any]:
    """``{"a", "b", "delta"}``: ``b - a`` when both are numbers, else null."""
    a, b = _number(a), _number(b)
    delta = None
    if a is not None and b is not None:
        delta = round(b - a, 6) if isinstance(a, float) or isinstance(b, float) else b - a
    return {"a": a, "b": b, "delta": delta}


def text(a: Any, b: Any) -> dict[str, Any]:
    """``{"a", "b", "changed"}`` for a value with no delta (an outcome, a reason)."""
    return {"a": a, "b": b, "changed": a != b}


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _get(side: Mapping[str, Any] | None, key: str) -> Any:
    return None if side is None else side.get(key)


def _only_in(a: object | None, b: object | None) -> str | None:
    return "a" if b is None else "b" if a is None else None


# -- the runs --------------------------------------------------------------------


def compare_summary(a: Side, b: Side) -> dict[str, Any]:
    """The runs' own figures side by side: status, units, duration, totals; tokens
    and cost over the tasks that reported them (null if none did)."""
    da, db = a.detail, b.detail
    found: dict[str, Any] = {"status": text(da["status"], db["status"])}
    for key in RUN_NUMBERS:
        found[key] = number(da[key], db[key])
    ta, tb = da.get("totals") or {}, db.get("totals") or {}
    for key in TOTAL_NUMBERS:
        found[key] = number(ta.get(key), tb.get(key))
    for key in ("tokens", "cost_usd"):
        found[key] = number(_known_sum(a.tasks, key), _known_sum(b.tasks, key))
    found["cost_estimated"] = bool(da["cost_estimated"] or db["cost_estimated"])
    return found


def _known_sum(tasks: list[dict[str, Any]], key: str) -> int | float | None:
    known = [t[key] for t in tasks if t[key] is not None]
    return sum(known) if known else None


# -- units -----------------------------------------------------------------------


def compare_units(a: Side, b: Side) -> list[dict[str, Any]]:
    """Each unit of either run (a's order, then b's own), side by side."""
    by_a = {u["unit"]: u for u in a.units}
    by_b = {u["unit"]: u for u in b.units}
    sums_a, sums_b = _unit_sums(a.tasks), _unit_sums(b.tasks)
    found = []
    for unit in _union(by_a, by_b):
        ua, ub = by_a.get(unit), by_b.get(unit)
        sa, sb = sums_a.get(unit), sums_b.get(unit)
        status = text(_get(ua, "status"), _get(ub, "status"))
        found.append(
            {
                "unit": unit,
                "only_in": _only_in(ua, ub),
                "changed": status["changed"],
                "status": status,
                "done": number(_get(ua, "done"), _get(ub, "done")),
                "tasks": number(_get(ua, "tasks"), _get(ub, "tasks")),
                "duration_ms": number(_get(ua, "duration_ms"), _get(ub, "duration_ms")),
                "attempts": number(_get(ua, "attempts"), _get(ub, "attempts")),
                "tokens": number(_get(sa, "tokens"), _get(sb, "tokens")),
                "cost_usd": number(_get(sa, "cost_usd"), _get(sb, "cost_usd")),
                "cost_estimated": bool(_get(sa, "cost_estimated") or _get(sb, "cost_estimated")),
                "stop_reasons": {
                    "a": _get(sa, "stop_reasons") if ua else None,
                    "b": _get(sb, "stop_reasons") if ub else None,
                },
                "reason": text(_get(ua, "reason"), _get(ub, "reason")),
            }
        )
    return found


def _union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _unit_sums(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per unit, over its tasks: tokens and cost (null if none reported), stop reasons."""
    found: dict[str, dict[str, Any]] = {}
    for t in tasks:
        unit = found.setdefault(
            t["unit"],
            {"tokens": None, "cost_usd": None, "cost_estimated": False, "stop_reasons": []},
        )
        for key in ("tokens", "cost_usd"):
            if t[key] is not None:
                unit[key] = (unit[key] or 0) + t[key]
        unit["cost_estimated"] = unit["cost_estimated"] or t["cost_estimated"]
        unit["stop_reasons"].append(t["stop_reason"])
    return found


# -- tasks -----------------------------------------------------------------------


def compare_tasks(a: Side, b: Side) -> list[dict[str, Any]]:
    """Each task of either run, side by side, in the units' order, then by number."""
    by_a = {(t["unit"], t["task"]): t for t in a.tasks}
    by_b = {(t["unit"], t["task"]): t for t in b.tasks}
    units = _union((u["unit"] for u in a.units), (u["unit"] for u in b.units))
    order = {unit: n for n, unit in enumerate(units)}
    keys = sorted(set(by_a) | set(by_b), key=lambda k: (order.get(k[0], len(order)), k[0], k[1]))
    found = []
    for unit, task in keys:
        ta, tb = by_a.get((unit, task)), by_b.get((unit, task))
        status = text(_get(ta, "status"), _get(tb, "status"))
        reason = text(_get(ta, "stop_reason"), _get(tb, "stop_reason"))
        found.append(
            {
                "unit": unit,
                "task": task,
                "title": _get(tb, "title") or _get(ta, "title"),
                "only_in": _only_in(ta, tb),
                "changed": status["changed"] or reason["changed"],
                "status": status,
                "stop_reason": reason,
                "flaky": text(_get(ta, "flaky"), _get(tb, "flaky")),
                "duration_ms": number(_get(ta, "duration_ms"), _get(tb, "duration_ms")),
                "attempts": number(_get(ta, "attempts"), _get(tb, "attempts")),
                "tokens": number(_get(ta, "tokens"), _get(tb, "tokens")),
                "cost_usd": number(_get(ta, "cost_usd"), _get(tb, "cost_usd")),
                "cost_estimated": bool(_get(ta, "cost_estimated") or _get(tb, "cost_estimated")),
                "stop_reasons": {"a": _get(ta, "stop_reasons"), "b": _get(tb, "stop_reasons")},
            }
        )
    return found


# -- the graph -------------------------------------------------------------------


def union_graph(
    a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, units: list[str]
) -> dict[str, Any] | None:
    """Both graphs as one: a's nodes, then b's own, then units of neither (from events);
    every edge of either; levels by longest path over them. None if neither run has one."""
    graphs = [g for g in (a, b) if g is not None]
    if not graphs:
        return None
    nodes: dict[str, Any] = {}
    edges: dict[tuple[str, str], dict[str, str]] = {}
    for graph in graphs:
        for node in _list(graph.get("nodes")):
            if isinstance(node, Mapping) and isinstance(node.get("id"), str):
                nodes.setdefault(node["id"], dict(node))
        for edge in _list(graph.get("edges")):
            if not isinstance(edge, Mapping):
                continue
            start, end = edge.get("from"), edge.get("to")
            if isinstance(start, str) and isinstance(end, str):
                edges.setdefault((start, end), {"from": start, "to": end})
    for unit in units:
        nodes.setdefault(unit, {"id": unit})
    kept = [e for e in edges.values() if e["from"] in nodes and e["to"] in nodes]
    return {"nodes": list(nodes.values()), "edges": kept, "levels": levels(list(nodes), kept)}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def levels(ids: list[str], edges: list[dict[str, str]]) -> list[list[str]]:
    """Units by level: 0 depends on nothing, n on something at n - 1 (a cycle's units
    go together after the rest)."""
    deps: dict[str, set[str]] = {unit: set() for unit in ids}
    for edge in edges:
        deps[edge["from"]].add(edge["to"])
    placed: set[str] = set()
    found: list[list[str]] = []
    while len(placed) < len(ids):
        ready = [u for u in ids if u not in placed and deps[u] <= placed]
        if not ready:  # a cycle: what is left, at once
            ready = [u for u in ids if u not in placed]
        found.append(ready)
        placed.update(ready)
    return found
