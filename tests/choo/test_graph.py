"""The unit graph built from a real tasks directory, and the scheduler's questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from choo.orchestrator.discovery import Plan, Unit, discover
from choo.orchestrator.graph import Graph, build_graph, dependents, ready_units
from choo.orchestrator.ordering import find_cycles, longest_path_levels, topological_order


def write_plan(root: Path, deps: dict[str, list[str]], tasks: dict[str, list[str]]) -> Plan:
    """Units with ``deps``; ``tasks[unit]`` lists each task's status."""
    tasks_dir = root / "units"
    for unit, unit_deps in deps.items():
        (tasks_dir / unit).mkdir(parents=True)
        plan = f"---\ndepends_on: [{', '.join(unit_deps)}]\n---\n# {unit}\n"
        (tasks_dir / unit / "IMPLEMENTATION_PLAN.md").write_text(plan)
        for number, status in enumerate(tasks.get(unit, []), 1):
            task = (
                f"---\ntask: {number}\nstatus: {status}\nbackpressure: none\n---\n# Task {number}\n"
            )
            (tasks_dir / unit / f"{number:02d}-task.md").write_text(task)
    return discover(tasks_dir)


# Four levels; "deploy" depends on a level-0 unit and a level-2 unit, so its
# level is set by the longest path, not the shortest.
DEPS = {
    "core": [],
    "config": [],
    "db": ["core"],
    "api": ["db", "config"],
    "ui": ["core"],
    "deploy": ["api", "config"],
    "docs": [],
}
TASKS = {
    "core": ["complete", "complete"],
    "db": ["complete", "failed", "pending"],
    "api": ["in_progress"],
    "deploy": [],
}


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return write_plan(tmp_path, DEPS, TASKS)


@pytest.fixture
def graph(plan: Plan) -> Graph:
    return build_graph(plan)


def test_levels_are_longest_path_depths_sorted_by_name(graph: Graph) -> None:
    assert graph.levels == [["config", "core", "docs"], ["db", "ui"], ["api"], ["deploy"]]
    assert graph.level_of("deploy") == 3
    with pytest.raises(KeyError):
        graph.level_of("nope")


def test_edges_point_from_the_dependent_to_its_dependency(graph: Graph) -> None:
    assert graph.edges == [
        {"from": "db", "to": "core"},
        {"from": "ui", "to": "core"},
        {"from": "api", "to": "db"},
        {"from": "api", "to": "config"},
        {"from": "deploy", "to": "api"},
        {"from": "deploy", "to": "config"},
    ]


def test_nodes_count_tasks_and_completed_tasks(graph: Graph) -> None:
    assert graph.nodes == [
        {"id": "config", "tasks": 0, "done": 0, "depends_on": []},
        {"id": "core", "tasks": 2, "done": 2, "depends_on": []},
        {"id": "docs", "tasks": 0, "done": 0, "depends_on": []},
        {"id": "db", "tasks": 3, "done": 1, "depends_on": ["core"]},
        {"id": "ui", "tasks": 0, "done": 0, "depends_on": ["core"]},
        {"id": "api", "tasks": 1, "done": 0, "depends_on": ["db", "config"]},
        {"id": "deploy", "tasks": 0, "done": 0, "depends_on": ["api", "config"]},
    ]


def test_to_dict_is_json_ready_and_a_copy(graph: Graph) -> None:
    data = graph.to_dict()
    assert json.loads(json.dumps(data)) == {
        "nodes": graph.nodes,
        "edges": graph.edges,
        "levels": graph.levels,
    }
    data["nodes"][0]["depends_on"].append("x")
    data["levels"][0].append("x")
    assert graph.nodes[0]["depends_on"] == []
    assert graph.levels[0] == ["config", "core", "docs"]


def test_single_unit_graph(tmp_path: Path) -> None:
    graph = build_graph(write_plan(tmp_path, {"only": []}, {"only": ["pending"]}))
    assert graph.to_dict() == {
        "nodes": [{"id": "only", "tasks": 1, "done": 0, "depends_on": []}],
        "edges": [],
        "levels": [["only"]],
    }


def test_build_graph_refuses_a_dependency_outside_the_plan(plan: Plan) -> None:
    partial = Plan(tasks_dir=plan.tasks_dir, units={"api": plan.units["api"]})
    with pytest.raises(ValueError, match='unit "api" depends on "db", which is not in the plan'):
        build_graph(partial)


def test_build_graph_refuses_a_cycle(tmp_path: Path) -> None:
    units = {
        name: Unit(id=name, path=tmp_path / name, depends_on=(dep,), provider=None, tasks=())
        for name, dep in (("a", "b"), ("b", "a"))
    }
    with pytest.raises(ValueError, match="cycle"):
        build_graph(Plan(tasks_dir=tmp_path, units=units))


@pytest.mark.parametrize("source", ["plan", "graph"])
def test_dependents_are_transitive(source: str, request: pytest.FixtureRequest) -> None:
    of = request.getfixturevalue(source)
    assert dependents(of, "core") == {"db", "ui", "api", "deploy"}
    assert dependents(of, "config") == {"api", "deploy"}
    assert dependents(of, "db") == {"api", "deploy"}
    assert dependents(of, "deploy") == set()
    assert dependents(of, "docs") == set()
    with pytest.raises(KeyError):
        dependents(of, "nope")


@pytest.mark.parametrize("source", ["plan", "graph"])
def test_ready_units_follow_dependencies_in_level_then_name_order(
    source: str, request: pytest.FixtureRequest
) -> None:
    of = request.getfixturevalue(source)
    none: set[str] = set()
    assert ready_units(of, none, none, none) == ["config", "core", "docs"]
    assert ready_units(of, {"core"}, none, none) == ["config", "docs", "db", "ui"]
    assert ready_units(of, {"core", "db"}, {"config"}, none) == ["docs", "ui"]
    assert ready_units(of, {"core", "db", "config"}, none, none) == ["docs", "ui", "api"]
    everything_but_deploy = {"core", "db", "config", "api", "ui", "docs"}
    assert ready_units(of, everything_but_deploy, none, none) == ["deploy"]
    assert ready_units(of, everything_but_deploy | {"deploy"}, none, none) == []


def test_ready_units_skip_running_blocked_and_failed(graph: Graph) -> None:
    ready = ready_units(graph, {"core"}, running={"config"}, blocked={"ui"}, failed={"docs"})
    assert ready == ["db"]


def test_failed_dependency_keeps_dependents_waiting(graph: Graph) -> None:
    assert ready_units(graph, {"core", "config"}, set(), set(), failed={"db"}) == ["docs", "ui"]


# -- the generic algorithms discovery relies on --------------------------------------------


def test_find_cycles_reports_each_cycle_once_from_its_smallest_node() -> None:
    deps = {"c": ["a"], "a": ["b"], "b": ["c"], "d": ["a"], "e": ["e"], "f": []}
    assert find_cycles(deps) == [["a", "b", "c", "a"], ["e", "e"]]


def test_find_cycles_rotates_a_cycle_entered_from_a_larger_node() -> None:
    # The search reaches the y/z cycle through x -> z, so it finds it as z -> y -> z.
    assert find_cycles({"x": ["z"], "z": ["y"], "y": ["z"]}) == [["y", "z", "y"]]


def test_find_cycles_reports_cycles_sharing_a_node() -> None:
    deps = {1: [2], 2: [1, 3], 3: [2]}
    assert find_cycles(deps) == [[1, 2, 1], [2, 3, 2]]


def test_find_cycles_on_an_acyclic_graph_with_shared_dependencies() -> None:
    deps = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "e": ["zz"]}
    assert find_cycles(deps) == []


def test_find_cycles_handles_long_chains_without_recursion() -> None:
    deps = {n: [n + 1] for n in range(5000)}
    deps[5000] = [0]
    (cycle,) = find_cycles(deps)
    assert cycle == [*range(5001), 0]


def test_topological_order_puts_dependencies_first_smallest_first() -> None:
    assert topological_order({3: [], 1: [3], 2: [], 4: [2, 1]}) == [2, 3, 1, 4]
    # A node freed late still goes before larger nodes that were free earlier.
    assert topological_order({5: [], 6: [], 7: [], 1: [5]}) == [5, 1, 6, 7]
    with pytest.raises(ValueError, match="cycle"):
        topological_order({1: [2], 2: [1], 3: []})


def test_longest_path_levels() -> None:
    assert longest_path_levels({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]}) == {
        "a": 0,
        "b": 1,
        "c": 2,
        "d": 3,
    }
