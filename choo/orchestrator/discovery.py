"""Read a tasks directory into a validated ``Plan`` of units and their tasks.

The format (compatible with existing choo task directories)::

    TASKS_DIR/<unit>/IMPLEMENTATION_PLAN.md   frontmatter: depends_on: [unit, ...], provider
    TASKS_DIR/<unit>/NN-name.md               frontmatter: task: N, status, depends_on: [N, ...],
                                              backpressure: "<shell command>"

A unit's ID is its directory name; a directory without IMPLEMENTATION_PLAN.md
(or whose name starts with a dot) is not a unit. A task's title is its first
``# `` heading, or else the file's stem; its body, after the frontmatter, is
the task's prompt. A task file without ``task:`` takes the number of its
``NN-`` prefix.

``discover`` checks everything before it answers: it collects every problem
in the directory, each naming its file and field, and raises ``PlanInvalid``
with all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from choo.errors import ChooError
from choo.orchestrator.frontmatter import STATUSES, FrontmatterError, describe, split
from choo.orchestrator.ordering import find_cycles, topological_order

PLAN_FILE = "IMPLEMENTATION_PLAN.md"
TASK_FILE = re.compile(r"^(\d+)-.*\.md$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a tasks directory; ``field`` is the frontmatter key, if any."""

    file: Path
    field: str | None
    message: str

    def __str__(self) -> str:
        if self.field is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}: {self.field}: {self.message}"


class PlanInvalid(ChooError):
    """The tasks directory cannot be run; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        heading = "1 problem" if count == 1 else f"{count} problems"
        super().__init__("\n  ".join([f"{heading} in the task files:", *map(str, self.problems)]))


@dataclass(frozen=True)
class Task:
    unit: str
    number: int
    title: str
    status: str
    depends_on: tuple[int, ...]
    backpressure: str | None
    path: Path
    body: str


@dataclass(frozen=True)
class Unit:
    """A unit; ``tasks`` are in dependency order, ties broken by task number."""

    id: str
    path: Path
    depends_on: tuple[str, ...]
    provider: str | None
    tasks: tuple[Task, ...]

    @property
    def plan_file(self) -> Path:
        return self.path / PLAN_FILE


@dataclass(frozen=True)
class Plan:
    """Every unit of a tasks directory, by ID, in name order."""

    tasks_dir: Path
    units: dict[str, Unit]


def discover(tasks_dir: Path) -> Plan:
    """Read and validate ``tasks_dir``; raises ``PlanInvalid`` listing every problem."""
    unit_dirs = _unit_dirs(tasks_dir)
    known = {directory.name for directory in unit_dirs}
    problems: list[Problem] = []
    units = {directory.name: _read_unit(directory, known, problems) for directory in unit_dirs}
    problems.extend(_unit_cycles(units))
    if problems:
        raise PlanInvalid(problems)
    return Plan(tasks_dir=tasks_dir, units=units)


def _unit_dirs(tasks_dir: Path) -> list[Path]:
    expected = f"expected a directory holding <unit>/{PLAN_FILE} files"
    if not tasks_dir.exists():
        raise PlanInvalid([Problem(tasks_dir, None, f"tasks directory not found: {expected}")])
    if not tasks_dir.is_dir():
        raise PlanInvalid([Problem(tasks_dir, None, f"not a directory: {expected}")])
    try:
        entries = sorted(tasks_dir.iterdir())
    except OSError as exc:
        raise PlanInvalid([Problem(tasks_dir, None, f"cannot list: {exc.strerror}")]) from exc
    unit_dirs = [
        entry
        for entry in entries
        if not entry.name.startswith(".") and entry.is_dir() and (entry / PLAN_FILE).is_file()
    ]
    if not unit_dirs:
        message = f"no units found: expected {tasks_dir / '<unit>' / PLAN_FILE}"
        raise PlanInvalid([Problem(tasks_dir, None, message)])
    return unit_dirs


def _read_unit(directory: Path, known: set[str], problems: list[Problem]) -> Unit:
    plan_file = directory / PLAN_FILE
    meta = _read(plan_file, problems)[0]
    fields = _Fields(plan_file, meta, problems)
    depends_on = fields.unit_names("depends_on", known, unit=directory.name)
    provider = fields.text("provider", "a provider name such as claude")
    tasks = _read_tasks(directory, problems)
    return Unit(
        id=directory.name,
        path=directory,
        depends_on=depends_on,
        provider=provider,
        tasks=_check_tasks(directory.name, tasks, problems),
    )


def _read(path: Path, problems: list[Problem]) -> tuple[dict[Any, Any], str]:
    """The file's frontmatter (``{}`` if it has none or it is broken) and body."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        problems.append(Problem(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        return {}, ""
    except OSError as exc:
        problems.append(Problem(path, None, f"cannot read: {exc.strerror}"))
        return {}, ""
    try:
        meta, body, _ = split(text)
    except FrontmatterError as exc:
        problems.append(Problem(path, None, exc.message))
        return {}, text
    return meta or {}, body


def _read_tasks(directory: Path, problems: list[Problem]) -> list[Task]:
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        problems.append(Problem(directory, None, f"cannot list: {exc.strerror}"))
        return []
    tasks = []
    for path in entries:
        match = TASK_FILE.match(path.name)
        # A folder named like a task is not one; a link to nowhere is a
        # task file that cannot be read, reported as such by _read.
        if match is None or path.is_dir():
            continue
        meta, body = _read(path, problems)
        fields = _Fields(path, meta, problems)
        tasks.append(
            Task(
                unit=directory.name,
                number=fields.task_number(default=int(match.group(1))),
                title=_title(body, path),
                status=fields.status(),
                depends_on=fields.task_numbers("depends_on"),
                backpressure=_blank_to_none(fields.text("backpressure", "a shell command")),
                path=path,
                body=body,
            )
        )
    return tasks


def _blank_to_none(command: str | None) -> str | None:
    return command if command and command.strip() else None


def _title(body: str, path: Path) -> str:
    for line in body.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or path.stem
    return path.stem


class _Fields:
    """Typed reads of one file's frontmatter; a bad value becomes a Problem and a default."""

    def __init__(self, path: Path, meta: dict[Any, Any], problems: list[Problem]) -> None:
        self.path = path
        self.meta = meta
        self.problems = problems

    def problem(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.path, field, message))

    def text(self, field: str, expected: str) -> str | None:
        value = self.meta.get(field)
        if value is None or isinstance(value, str):
            return value
        self.problem(field, f"expected {expected} (a string), got {describe(value)}")
        return None

    def status(self) -> str:
        value = self.meta.get("status")
        if value is None:
            return "pending"
        if value not in STATUSES:
            allowed = ", ".join(STATUSES)
            self.problem("status", f"expected one of {allowed}; got {describe(value)}")
            return "pending"
        return str(value)

    def task_number(self, *, default: int) -> int:
        value = self.meta.get("task")
        if value is None:
            return default
        if not _is_int(value) or value < 0:
            self.problem("task", f"expected a task number (an integer >= 0), got {describe(value)}")
            return default
        return int(value)

    def task_numbers(self, field: str) -> tuple[int, ...]:
        items = self.list_of(field, "task numbers, e.g. [1, 2]", _is_int)
        return tuple(dict.fromkeys(items))

    def unit_names(self, field: str, known: set[str], *, unit: str) -> tuple[str, ...]:
        names = self.list_of(field, "unit names, e.g. [api, db]", lambda v: isinstance(v, str))
        found = []
        for name in dict.fromkeys(names):
            if name in known:
                found.append(name)
            else:
                others = ", ".join(sorted(known - {unit}))
                expected = f"expected one of {others}" if others else "there are no other units"
                self.problem(field, f'unit "{name}" does not exist; {expected}')
        return tuple(found)

    def list_of(self, field: str, expected: str, accept: Callable[[object], bool]) -> list[Any]:
        value = self.meta.get(field)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(field, f"expected a list of {expected}; got {describe(value)}")
            return []
        good = [item for item in value if accept(item)]
        for position, item in enumerate(value, 1):
            if not accept(item):
                self.problem(
                    field, f"expected a list of {expected}; item {position} is {describe(item)}"
                )
        return good


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_tasks(unit: str, tasks: list[Task], problems: list[Problem]) -> tuple[Task, ...]:
    """Report duplicate numbers, missing and cyclic dependencies; order the tasks."""
    by_number: dict[int, Task] = {}
    for task in tasks:
        first = by_number.setdefault(task.number, task)
        if first is not task:
            problems.append(
                Problem(
                    task.path,
                    "task",
                    f"task number {task.number} is also used by {first.path}: "
                    f'give each task of unit "{unit}" its own number',
                )
            )
    existing = ", ".join(map(str, sorted(by_number)))
    for task in tasks:
        for dep in task.depends_on:
            if dep not in by_number:
                message = f'task {dep} does not exist in unit "{unit}"; its tasks are {existing}'
                problems.append(Problem(task.path, "depends_on", message))
    deps = {n: [d for d in task.depends_on if d in by_number] for n, task in by_number.items()}
    cycles = find_cycles(deps)
    for cycle in cycles:
        message = _cycle_message(cycle, "between tasks ")
        problems.append(Problem(by_number[cycle[0]].path, "depends_on", message))
    if cycles:
        return tuple(by_number[n] for n in sorted(by_number))
    return tuple(by_number[n] for n in topological_order(deps))


def _unit_cycles(units: dict[str, Unit]) -> list[Problem]:
    deps = {unit_id: unit.depends_on for unit_id, unit in units.items()}
    return [
        Problem(units[cycle[0]].plan_file, "depends_on", _cycle_message(cycle, "between units "))
        for cycle in find_cycles(deps)
    ]


def _cycle_message(cycle: Sequence[object], between: str) -> str:
    path = " -> ".join(map(str, cycle))
    return (
        f"dependency cycle {between}{path} (each depends on the next): "
        "remove one of these dependencies"
    )
