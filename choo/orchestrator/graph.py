"""The unit dependency graph: nodes, edges, levels, and what a scheduler asks of it.

``build_graph`` turns a valid ``Plan`` into the structure recorded with a run
and drawn by the web UI: ``nodes``, ``edges`` (``from`` depends on ``to``) and
``levels`` (level 0 holds the units without dependencies; a unit's level is
one more than the highest level among its dependencies, its longest-path
depth). ``dependents`` and ``ready_units`` answer the scheduler's questions.

The generic algorithms it stands on are in ``ordering.py``.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import TypedDict

from choo.orchestrator.discovery import Plan
from choo.orchestrator.ordering import longest_path_levels


class GraphNode(TypedDict):
    id: str
    tasks: int  # how many tasks the unit has
    done: int  # how many of them were complete when the graph was built
    depends_on: list[str]


# "from" is a keyword, so this one needs the functional syntax.
GraphEdge = TypedDict("GraphEdge", {"from": str, "to": str})


class GraphDict(TypedDict):
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    levels: list[list[str]]


@dataclass(frozen=True)
class Graph:
    """Units as nodes in level-then-name order; ``edges`` point at dependencies."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    levels: list[list[str]]

    def level_of(self, unit: str) -> int:
        for depth, members in enumerate(self.levels):
            if unit in members:
                return depth
        raise KeyError(unit)

    def to_dict(self) -> GraphDict:
        """A JSON-ready copy: ``{"nodes": [...], "edges": [...], "levels": [...]}``."""
        return {
            "nodes": [{**node, "depends_on": list(node["depends_on"])} for node in self.nodes],
            "edges": [{"from": edge["from"], "to": edge["to"]} for edge in self.edges],
            "levels": [list(level) for level in self.levels],
        }


def build_graph(plan: Plan) -> Graph:
    """The graph of ``plan``'s units; raises ``ValueError`` for unknown deps or a cycle."""
    deps = {unit_id: unit.depends_on for unit_id, unit in plan.units.items()}
    for unit_id, unit_deps in deps.items():
        for dep in unit_deps:
            if dep not in deps:
                raise ValueError(f'unit "{unit_id}" depends on "{dep}", which is not in the plan')
    depth = longest_path_levels(deps)
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for unit_id in sorted(depth):
        levels[depth[unit_id]].append(unit_id)
    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []
    for unit_id in (unit_id for level in levels for unit_id in level):
        unit = plan.units[unit_id]
        done = sum(1 for task in unit.tasks if task.status == "complete")
        nodes.append(
            {
                "id": unit_id,
                "tasks": len(unit.tasks),
                "done": done,
                "depends_on": list(deps[unit_id]),
            }
        )
        edges.extend({"from": unit_id, "to": dep} for dep in deps[unit_id])
    return Graph(nodes=nodes, edges=edges, levels=levels)


def dependents(source: Graph | Plan, unit: str) -> set[str]:
    """Every unit that depends on ``unit``, directly or through others.

    These are the units a failure of ``unit`` blocks. Raises ``KeyError`` for
    a unit that is not in ``source``.
    """
    deps = _unit_deps(source)
    if unit not in deps:
        raise KeyError(unit)
    users: dict[str, list[str]] = {unit_id: [] for unit_id in deps}
    for unit_id, unit_deps in deps.items():
        for dep in unit_deps:
            users.setdefault(dep, []).append(unit_id)
    found: set[str] = set()
    pending = [unit]
    while pending:
        for user in users.get(pending.pop(), ()):
            if user not in found:
                found.add(user)
                pending.append(user)
    return found


def ready_units(
    source: Plan | Graph,
    done: Set[str],
    running: Set[str],
    blocked: Set[str],
    *,
    failed: Set[str] = frozenset(),
) -> list[str]:
    """Units that can start now, in level then name order.

    A unit is ready when every one of its dependencies is done and it is not
    itself done, running, blocked or failed.
    """
    graph = source if isinstance(source, Graph) else build_graph(source)
    settled = done | running | blocked | failed
    return [
        node["id"]
        for node in graph.nodes
        if node["id"] not in settled and all(dep in done for dep in node["depends_on"])
    ]


def _unit_deps(source: Graph | Plan) -> dict[str, tuple[str, ...]]:
    if isinstance(source, Graph):
        return {node["id"]: tuple(node["depends_on"]) for node in source.nodes}
    return {unit_id: unit.depends_on for unit_id, unit in source.units.items()}
