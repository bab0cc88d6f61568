"""Orderings of dependencies: cycles, a topological order, longest-path levels.

Generic: they work on any ``{node: dependencies}`` mapping. Discovery uses
them to validate units and tasks, and ``graph.py`` to draw a plan's levels.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import TypeVar

N = TypeVar("N", str, int)


def find_cycles(deps: Mapping[N, Iterable[N]]) -> list[list[N]]:
    """Dependency cycles, each as a path back to its start: ``[a, b, a]``.

    One cycle per back edge of a depth-first search that visits nodes and
    their dependencies in sorted order: deterministic, each cycle reported
    once (rotated to start at its smallest node), and every tangle of
    dependencies gets at least one report. Not every elementary cycle of a
    tangle is listed; that number can grow exponentially.
    """
    grey: set[N] = set()
    finished: set[N] = set()
    found: set[tuple[N, ...]] = set()
    for root in sorted(deps):
        if root in finished:
            continue
        path = [root]
        grey.add(root)
        stack = [iter(sorted(deps[root]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                node = path.pop()
                grey.discard(node)
                finished.add(node)
                stack.pop()
            elif following in grey:
                found.add(_closed(path[path.index(following) :]))
            elif following not in finished:
                path.append(following)
                grey.add(following)
                stack.append(iter(sorted(deps.get(following, ()))))
    return [list(cycle) for cycle in sorted(found)]


def _closed(cycle: list[N]) -> tuple[N, ...]:
    """The cycle started at its smallest node and ending where it starts."""
    first = cycle.index(min(cycle))
    rotated = cycle[first:] + cycle[:first]
    return tuple(rotated + rotated[:1])


def topological_order(deps: Mapping[N, Iterable[N]]) -> list[N]:
    """Every node after its dependencies; among nodes free to go, the smallest first.

    Dependencies that are not keys of ``deps`` are ignored. Raises
    ``ValueError`` if there is a cycle.
    """
    waiting = {node: {dep for dep in node_deps if dep in deps} for node, node_deps in deps.items()}
    users: dict[N, list[N]] = {node: [] for node in deps}
    for node, node_deps in waiting.items():
        for dep in node_deps:
            users[dep].append(node)
    free = [node for node, node_deps in waiting.items() if not node_deps]
    heapq.heapify(free)
    order: list[N] = []
    while free:
        node = heapq.heappop(free)
        order.append(node)
        for user in users[node]:
            waiting[user].discard(node)
            if not waiting[user]:
                heapq.heappush(free, user)
    if len(order) != len(waiting):
        raise ValueError(f"dependency cycle among {sorted(set(waiting) - set(order))}")
    return order


def longest_path_levels(deps: Mapping[N, Iterable[N]]) -> dict[N, int]:
    """Each node's level: 0 without dependencies, else 1 + the highest dependency level.

    Raises ``ValueError`` if there is a cycle.
    """
    level: dict[N, int] = {}
    for node in topological_order(deps):
        level[node] = 1 + max((level[dep] for dep in deps[node] if dep in level), default=-1)
    return level
