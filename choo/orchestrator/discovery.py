"""Read a tasks directory into a validated ``Plan`` of units and their tasks.

The format (compatible with existing choo task directories)::

    TASKS_DIR/<unit>/IMPLEMENTATION_PLAN.md   frontmatter: depends_on: [unit, ...], provider
    TASKS_DIR/<unit>/NN-name.md               frontmatter: task: N, status, depends_on: [N, ...],
                                              backpressure: "<shell command>" | none

A unit's ID is its directory name; a directory whose name starts with a dot
is not a unit, and one without IMPLEMENTATION_PLAN.md is not one either (but
is reported when it holds ``NN-*.md`` files: it looks like a unit that lost
its plan file). A task's title is its first ``# `` heading, or else the
file's stem; its body, after the frontmatter, is the task's prompt. A task
file without ``task:`` takes the number of its ``NN-`` prefix. Every task
file has frontmatter, and names its validation command (``backpressure``),
or says ``backpressure: none`` to pass on the agent's exit code alone.

Keys other than the format's are metadata (``title``, ``prd_id``,
``feature``...) and pass quietly, unless one looks like a misspelling of a
known key (``backpresure``): that is a warning, in ``Plan.warnings``.

``discover`` checks everything before it answers: it collects every problem
in the directory, each naming its file and field, and raises ``PlanInvalid``
with all of them at once. Files are read through ``planfile``: a FIFO, a
device, a file linked from outside the repository or one over
``plan.max_file_bytes`` is a problem, never a hang.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from choo.errors import ChooError
from choo.orchestrator.frontmatter import STATUSES, FrontmatterError, describe, split
from choo.orchestrator.ordering import find_cycles, topological_order
from choo.orchestrator.planfile import DEFAULT_MAX_BYTES, PlanFileRefused, read_text, repository_of

PLAN_FILE = "IMPLEMENTATION_PLAN.md"
TASK_FILE = re.compile(r"^(\d+)-.*\.md$")
PLAN_KEYS = ("unit", "depends_on", "provider")  # and any orch_* key
PLAN_KEY_PREFIX = "orch_"
TASK_KEYS = ("task", "status", "backpressure", "depends_on")
NO_BACKPRESSURE = "none"  # `backpressure: none`: the agent's exit code decides alone
MISSPELLING_CUTOFF = 0.75  # difflib ratio above which an unknown key is taken for a typo


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
    """The tasks directory cannot be run; ``problems`` lists every reason.

    ``warnings`` (keys that look misspelled) are listed after them: with
    everything in one message, one edit can fix them all.
    """

    def __init__(self, problems: Sequence[Problem], warnings: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings)
        text = _listed(f"{_count(self.problems, 'problem')} in the task files:", problems)
        if self.warnings:
            text += "\n" + _listed(f"and {_count(self.warnings, 'warning')}:", warnings)
        super().__init__(text)


def _listed(heading: str, problems: Sequence[Problem]) -> str:
    return "\n  ".join([heading, *map(str, problems)])


def _count(items: Sequence[object], word: str) -> str:
    return f"1 {word}" if len(items) == 1 else f"{len(items)} {word}s"


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
    """Every unit of a tasks directory, by ID, in name order.

    ``warnings`` are what the run goes on despite: keys that look misspelled.
    """

    tasks_dir: Path
    units: dict[str, Unit]
    warnings: tuple[Problem, ...] = ()

    def only(self, keep: set[str]) -> Plan:
        """The plan limited to the units in ``keep`` (its warnings stay)."""
        return replace(self, units={k: v for k, v in self.units.items() if k in keep})


@dataclass
class _Report:
    """What reading a tasks directory found wrong: problems stop the run, warnings do not;
    and how its files are read (``root``: the repository they must stay in)."""

    problems: list[Problem]
    warnings: list[Problem]
    root: Path
    max_bytes: int


def discover(
    tasks_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, root: Path | None = None
) -> Plan:
    """Read and validate ``tasks_dir``; raises ``PlanInvalid`` listing every problem.

    No file over ``max_bytes`` (``plan.max_file_bytes``) is read, nor any whose
    real path is outside ``root`` (default: ``planfile.repository_of(tasks_dir)``).
    """
    entries = _entries(tasks_dir)
    report = _Report(
        problems=_plan_files_missing(entries),
        warnings=[],
        root=root.resolve() if root is not None else repository_of(tasks_dir),
        max_bytes=max_bytes,
    )
    unit_dirs = _unit_dirs(tasks_dir, entries, report.problems)
    known = {directory.name for directory in unit_dirs}
    units = {directory.name: _read_unit(directory, known, report) for directory in unit_dirs}
    report.problems.extend(_unit_cycles(units))
    if report.problems:
        raise PlanInvalid(report.problems, report.warnings)
    return Plan(tasks_dir=tasks_dir, units=units, warnings=tuple(report.warnings))


def _entries(tasks_dir: Path) -> list[Path]:
    """The folders of ``tasks_dir`` that may be units (not hidden), in name order."""
    expected = f"expected a directory holding <unit>/{PLAN_FILE} files"
    if not tasks_dir.exists():
        raise PlanInvalid([Problem(tasks_dir, None, f"tasks directory not found: {expected}")])
    if not tasks_dir.is_dir():
        raise PlanInvalid([Problem(tasks_dir, None, f"not a directory: {expected}")])
    try:
        entries = sorted(tasks_dir.iterdir())
    except OSError as exc:
        raise PlanInvalid([Problem(tasks_dir, None, f"cannot list: {exc.strerror}")]) from exc
    return [entry for entry in entries if not entry.name.startswith(".") and entry.is_dir()]


def _has_plan_file(directory: Path) -> bool:
    """Whatever is there (a FIFO, a link to nowhere) makes a unit, whose plan file is then
    reported if it cannot be read."""
    return os.path.lexists(directory / PLAN_FILE) and not (directory / PLAN_FILE).is_dir()


def _unit_dirs(tasks_dir: Path, entries: list[Path], problems: list[Problem]) -> list[Path]:
    unit_dirs = [entry for entry in entries if _has_plan_file(entry)]
    if not unit_dirs:
        message = f"no units found: expected {tasks_dir / '<unit>' / PLAN_FILE}"
        raise PlanInvalid([Problem(tasks_dir, None, message), *problems])
    return unit_dirs


def _plan_files_missing(entries: list[Path]) -> list[Problem]:
    """A folder holding task files but no plan file: a unit whose plan file is missing."""
    problems = []
    for entry in entries:
        if _has_plan_file(entry):
            continue
        names = sorted(path.name for path in _task_files(entry))
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            message = (
                f"holds task files ({shown}) but no {PLAN_FILE}, so it is "
                f"not a unit: add {entry / PLAN_FILE} (it may be empty), or move the task "
                "files out"
            )
            problems.append(Problem(entry, None, message))
    return problems


def _task_files(directory: Path) -> list[Path]:
    """``NN-*.md`` files of ``directory`` (a link to nowhere counts: reported unreadable)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    return [path for path in entries if TASK_FILE.match(path.name) and not path.is_dir()]


def _read_unit(directory: Path, known: set[str], report: _Report) -> Unit:
    plan_file = directory / PLAN_FILE
    source = _read(plan_file, report)
    fields = _Fields(plan_file, source.meta or {}, report.problems)
    report.warnings.extend(_misspelled(plan_file, source.meta, PLAN_KEYS, PLAN_KEY_PREFIX))
    depends_on = fields.unit_names("depends_on", known, unit=directory.name)
    provider = fields.text("provider", "a provider name such as claude")
    tasks = _read_tasks(directory, report)
    return Unit(
        id=directory.name,
        path=directory,
        depends_on=depends_on,
        provider=provider,
        tasks=_check_tasks(directory.name, tasks, report.problems),
    )


@dataclass(frozen=True)
class _Source:
    """A file as read: ``meta`` is None when it has no frontmatter block."""

    meta: dict[Any, Any] | None
    body: str
    broken: bool = False  # unreadable, or its frontmatter cannot be parsed (reported)


def _read(path: Path, report: _Report) -> _Source:
    problems = report.problems
    try:
        text = read_text(path, root=report.root, max_bytes=report.max_bytes)
    except PlanFileRefused as exc:
        problems.append(Problem(path, None, str(exc)))
        return _Source({}, "", broken=True)
    except UnicodeDecodeError as exc:
        problems.append(Problem(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        return _Source({}, "", broken=True)
    except OSError as exc:
        problems.append(Problem(path, None, f"cannot read: {exc.strerror}"))
        return _Source({}, "", broken=True)
    try:
        meta, body, _ = split(text)
    except FrontmatterError as exc:
        problems.append(Problem(path, None, exc.message))
        return _Source({}, text, broken=True)
    return _Source(meta, body)


def _read_tasks(directory: Path, report: _Report) -> list[Task]:
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        report.problems.append(Problem(directory, None, f"cannot list: {exc.strerror}"))
        return []
    tasks = []
    for path in entries:
        match = TASK_FILE.match(path.name)
        # A folder named like a task is not one; a link to nowhere is a
        # task file that cannot be read, reported as such by _read.
        if match is None or path.is_dir():
            continue
        source = _read(path, report)
        if source.meta is None:
            report.problems.append(_no_frontmatter(path))
        fields = _Fields(path, source.meta or {}, report.problems)
        report.warnings.extend(_misspelled(path, source.meta, TASK_KEYS))
        tasks.append(
            Task(
                unit=directory.name,
                number=fields.task_number(default=int(match.group(1))),
                title=_title(source.body, path),
                status=fields.status(),
                depends_on=fields.task_numbers("depends_on"),
                backpressure=_backpressure(fields, source),
                path=path,
                body=source.body,
            )
        )
    return tasks


def _backpressure(fields: _Fields, source: _Source) -> str | None:
    """The task's validation command; None for ``backpressure: none``, or when a
    file's frontmatter is broken or missing (reported already: no more noise)."""
    if source.meta is None or source.broken:
        return None
    value = source.meta.get("backpressure")
    if not isinstance(value, str | None):
        fields.text("backpressure", "a shell command")  # reports the wrong type
        return None
    if value and value.strip():
        return None if value.strip().lower() == NO_BACKPRESSURE else value
    fields.problem(
        "backpressure",
        'no validation command: add backpressure: "<command that checks the work>" (e.g. '
        f'"pytest -q"), or backpressure: {NO_BACKPRESSURE} to pass on the agent\'s exit code '
        "alone",
    )
    return None


def _no_frontmatter(path: Path) -> Problem:
    return Problem(
        path,
        None,
        "no frontmatter: start the file with a '---' line, then at least its validation "
        f'command, backpressure: "<command>" (or backpressure: {NO_BACKPRESSURE}), then '
        "another '---' line",
    )


def _misspelled(
    path: Path, meta: dict[Any, Any] | None, known: tuple[str, ...], prefix: str | None = None
) -> list[Problem]:
    """Warnings for keys that look like misspellings of ``known`` ones; other keys pass."""
    warnings = []
    for key in meta or {}:
        if not isinstance(key, str) or key in known or (prefix and key.startswith(prefix)):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=MISSPELLING_CUTOFF)
        if close:
            message = f"unknown key, ignored: did you mean {close[0]!r}?"
            warnings.append(Problem(path, key, message))
    return warnings


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
