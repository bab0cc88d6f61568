"""The arrows of DESIGN.md section 1, kept one-way: read every import with ``ast``.

Every ``import`` and ``from ... import`` of every .py file of our four
packages counts, wherever it is (under ``TYPE_CHECKING``, inside a
function), and so does ``importlib.import_module("...")`` with a literal
name. Two rules:

- no import cycle among the files of one package (subpackages included);
- a package imports only what it may:

      protocol     -> nothing of ours
      choo         -> choo, protocol
      choo_web     -> choo_web, protocol
      choo_daemon  -> choo_daemon, protocol, choo_web
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "choo", "choo_web", "choo_daemon")
ALLOWED: dict[str, frozenset[str]] = {
    "protocol": frozenset({"protocol"}),
    "choo": frozenset({"choo", "protocol"}),
    "choo_web": frozenset({"choo_web", "protocol"}),
    "choo_daemon": frozenset({"choo_daemon", "protocol", "choo_web"}),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module (a file of ours, or a name outside)
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``packages`` under ``root``."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_package(module: str, files: dict[str, Path]) -> bool:
    return files[module].name == "__init__.py"


def _named(node: ast.AST, module: str, files: dict[str, Path]) -> Iterator[str]:
    """The module names an import node (or import_module call) names."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module if _is_package(module, files) else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        for alias in node.names:
            # `from a import b` imports the module a.b when there is one, else a name of a.
            yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
    elif isinstance(node, ast.Call) and any(map(_is_import_module, [node.func, *node.args])):
        # importlib.import_module("x"), also when handed on: run_sync(import_module, "x").
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value


def _is_import_module(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return name == "import_module"


def imports(files: dict[str, Path]) -> list[Import]:
    """Every import in ``files``, its target resolved to a module file where it is one of ours."""
    found: list[Import] = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for name in _named(node, module, files):
                # `import a.b.c` of a name inside a module: the longest module prefix.
                target = name
                while target not in files and "." in target:
                    target = target.rpartition(".")[0]
                line = node.lineno if isinstance(node, ast.stmt | ast.expr) else 0
                found.append(Import(module, target if target in files else name, line))
    return list(dict.fromkeys(found))  # `from a import b, c`: one import of a


def _top(module: str) -> str:
    return module.partition(".")[0]


def forbidden(found: list[Import]) -> list[Import]:
    return [
        imp
        for imp in found
        if _top(imp.target) in ALLOWED and _top(imp.target) not in ALLOWED[_top(imp.source)]
    ]


def cycles(found: list[Import], package: str) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per tangle in ``package``."""
    graph = _graph(found, package)
    return [_cycle_in(graph, scc) for scc in _tangles(graph)]


def tangles(found: list[Import], package: str) -> list[list[str]]:
    """The modules of ``package`` that import each other in a circle, each group sorted."""
    return [sorted(scc) for scc in _tangles(_graph(found, package))]


def _graph(found: list[Import], package: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in found:
        # A module importing itself is no cycle between files (``python -m``
        # runs it as __main__, which imports it under its own name).
        if _top(imp.source) == package == _top(imp.target) and imp.source != imp.target:
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    return graph


def _tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.add(member)
                    if member == node:
                        break
                if len(scc) > 1:
                    out.append(scc)
    return out


def _cycle_in(graph: dict[str, set[str]], scc: set[str]) -> list[str]:
    """A shortest path from the first member of ``scc`` back to itself (breadth first)."""
    start = min(scc)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node] & scc):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(scc)}")


FILES = module_files(ROOT, PACKAGES)
IMPORTS = imports(FILES)


def test_every_package_is_read() -> None:
    for package in PACKAGES:
        assert sum(_top(m) == package for m in FILES) >= 5, package
    # Imports inside functions and under TYPE_CHECKING are seen too.
    assert any(str(i).startswith("choo_daemon.__main__:") for i in IMPORTS)
    assert ("choo_daemon.daemon", "choo_web.app") in {(i.source, i.target) for i in IMPORTS}


def test_no_forbidden_arrow() -> None:
    bad = forbidden(IMPORTS)
    assert not bad, "imports against DESIGN.md section 1:\n" + "\n".join(map(str, bad))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_between_the_files_of(package: str) -> None:
    found = cycles(IMPORTS, package)
    assert not found, f"import cycles in {package}:\n" + "\n".join(
        f"{' -> '.join(cycle)}\n  (in a tangle of {len(group)}: {', '.join(group)})"
        for cycle, group in zip(found, tangles(IMPORTS, package), strict=True)
    )


def test_the_checks_find_a_cycle_and_a_forbidden_arrow(tmp_path: Path) -> None:
    """The walker itself, on a made-up tree: a 3-file cycle and protocol importing choo."""
    for name, text in {
        "choo/__init__.py": "",
        "choo/a.py": "from choo import b\n",
        "choo/b.py": "def f():\n    from choo.c import x\n",
        "choo/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import choo.a\n",
        "choo/d.py": "from . import a\n",
        "protocol/__init__.py": "",
        "protocol/p.py": "import importlib\nimportlib.import_module('choo.d')\n",
        "protocol/q.py": "from protocol import q\nrun(importlib.import_module, 'protocol.p')\n",
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    found = imports(module_files(tmp_path, ("choo", "protocol")))
    assert cycles(found, "choo") == [["choo.a", "choo.b", "choo.c", "choo.a"]]
    assert [str(i) for i in forbidden(found)] == ["protocol.p:2 imports choo.d"]
    edges = {(i.source, i.target) for i in found}
    assert ("choo.d", "choo.a") in edges and ("protocol.q", "protocol.p") in edges
    assert cycles(found, "protocol") == []
