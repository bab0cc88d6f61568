"""Discovery of a tasks directory: the plan it builds and every problem it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from choo.orchestrator.discovery import Plan, PlanInvalid, Problem, Task, discover
from choo.orchestrator.frontmatter import set_status


def write(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path -> text) under ``root/units``; return that dir."""
    tasks_dir = root / "units"
    tasks_dir.mkdir(exist_ok=True)
    for relative, text in files.items():
        path = tasks_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    return tasks_dir


def problems_of(tasks_dir: Path) -> list[str]:
    with pytest.raises(PlanInvalid) as caught:
        discover(tasks_dir)
    return [str(problem) for problem in caught.value.problems]


def only_problem(tasks_dir: Path) -> str:
    found = problems_of(tasks_dir)
    assert len(found) == 1, found
    return found[0]


NONE = "---\nbackpressure: none\n---\n"  # frontmatter of a task without a validation command
NO_COMMAND = (
    'no validation command: add backpressure: "<command that checks the work>" (e.g. '
    '"pytest -q"), or backpressure: none to pass on the agent\'s exit code alone'
)
NO_FRONTMATTER = (
    "no frontmatter: start the file with a '---' line, then at least its validation command, "
    "backpressure: \"<command>\" (or backpressure: none), then another '---' line"
)
TYPO = "unknown key, ignored: did you mean 'backpressure'?"

GOOD = {
    "db/IMPLEMENTATION_PLAN.md": "# Database\n\nNo frontmatter at all.\n",
    "db/01-schema.md": (
        '---\ntask: 1\nstatus: complete\nbackpressure: "pytest -q tests/db"\n---\n'
        "# Create the schema\n\nWrite the tables.\n"
    ),
    "db/02-seed.md": "---\ntask: 2\ndepends_on: [1]\nbackpressure: none\n---\nNo heading here.\n",
    "api/IMPLEMENTATION_PLAN.md": (
        "---\ndepends_on: [db]\nprovider: codex\norch_parallel: 2\nfeature: x\n---\n# API\n"
    ),
    # Task 1 depends on 3, so the order is 2, 3, 1 (ties by number).
    "api/01-routes.md": (
        "---\ntask: 1\ndepends_on: [3]\nstatus: in_progress\nbackpressure: make test\n---\n"
        "# Routes\n"
    ),
    # Keys of other tools are metadata: they pass quietly.
    "api/02-models.md": (
        "---\ntask: 2\ntitle: Models\nprd_id: PRD-7\nfeature: accounts\nbackpressure: NONE\n"
        "---\n# Models\n"
    ),
    "api/03-auth.md": (
        "---\ntask: 3\ndepends_on: [2]\nstatus: failed\nbackpressure: make auth\n---\n# Auth\n"
    ),
    "api/notes.md": "not a task file\n",
    "api/README.md": "---\nnot: [closed\n",
    "ui/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [api, db]\n---\n",
    # No `task:` key: the number comes from the file name's prefix.
    "ui/07-pages.md": "---\nbackpressure: none\n---\n# Pages\n",
    "docs/IMPLEMENTATION_PLAN.md": "---\nprovider: claude\n---\n",
    "scratch/notes.md": "---\ntask: [\n",
    ".hidden/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [nowhere]\n",
}


@pytest.fixture
def good_plan(tmp_path: Path) -> Plan:
    return discover(write(tmp_path, GOOD))


def test_units_are_the_dirs_with_a_plan_file_in_name_order(good_plan: Plan) -> None:
    assert list(good_plan.units) == ["api", "db", "docs", "ui"]
    assert good_plan.tasks_dir.name == "units"


def test_unit_fields(good_plan: Plan) -> None:
    api, db, docs, ui = (good_plan.units[name] for name in ("api", "db", "docs", "ui"))
    assert (api.id, api.depends_on, api.provider) == ("api", ("db",), "codex")
    assert api.path == good_plan.tasks_dir / "api"
    assert api.plan_file == good_plan.tasks_dir / "api" / "IMPLEMENTATION_PLAN.md"
    assert (db.depends_on, db.provider) == ((), None)
    assert (docs.depends_on, docs.provider, docs.tasks) == ((), "claude", ())
    assert ui.depends_on == ("api", "db")


def test_tasks_are_in_dependency_order_with_ties_by_number(good_plan: Plan) -> None:
    assert [task.number for task in good_plan.units["api"].tasks] == [2, 3, 1]
    assert [task.number for task in good_plan.units["db"].tasks] == [1, 2]


def test_task_fields(good_plan: Plan) -> None:
    units = good_plan.tasks_dir
    schema, seed = good_plan.units["db"].tasks
    assert schema == Task(
        unit="db",
        number=1,
        title="Create the schema",
        status="complete",
        depends_on=(),
        backpressure="pytest -q tests/db",
        path=units / "db" / "01-schema.md",
        body="# Create the schema\n\nWrite the tables.\n",
    )
    assert (seed.title, seed.status, seed.depends_on, seed.backpressure) == (
        "02-seed",
        "pending",
        (1,),
        None,
    )
    statuses = {task.number: task.status for task in good_plan.units["api"].tasks}
    assert statuses == {1: "in_progress", 2: "pending", 3: "failed"}


def test_missing_task_key_takes_the_file_name_number(good_plan: Plan) -> None:
    (pages,) = good_plan.units["ui"].tasks
    assert (pages.number, pages.title, pages.body) == (7, "Pages", "# Pages\n")


def test_task_key_wins_over_the_file_name_number(tmp_path: Path) -> None:
    plan = discover(
        write(
            tmp_path,
            {
                "a/IMPLEMENTATION_PLAN.md": "",
                "a/01-x.md": "---\ntask: 5\nbackpressure: none\n---\n",
            },
        )
    )
    assert [task.number for task in plan.units["a"].tasks] == [5]


def test_title_is_the_first_level_one_heading(tmp_path: Path) -> None:
    body = NONE + "intro\n## Not this\n#nor this\n# The title  \n# Later\n"
    plan = discover(write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": body}))
    assert plan.units["a"].tasks[0].title == "The title"


def test_repeated_dependencies_count_once(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [b, b]\n---\n",
            "a/01-x.md": NONE,
            "a/02-y.md": "---\ndepends_on: [1, 1]\nbackpressure: none\n---\n",
            "b/IMPLEMENTATION_PLAN.md": "",
        },
    )
    plan = discover(tasks_dir)
    assert plan.units["a"].depends_on == ("b",)
    assert plan.units["a"].tasks[1].depends_on == (1,)


def test_backpressure_none_means_the_exit_code_decides(tmp_path: Path) -> None:
    for spelled in ("none", "None", " NONE "):
        task = f"---\nbackpressure: '{spelled}'\n---\n"
        plan = discover(write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": task}))
        assert plan.units["a"].tasks[0].backpressure is None


def test_crlf_task_file(tmp_path: Path) -> None:
    task = "---\r\ntask: 1\r\nstatus: complete\r\nbackpressure: none\r\n---\r\n# Title\r\nbody\r\n"
    plan = discover(write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": task}))
    (found,) = plan.units["a"].tasks
    assert (found.status, found.title, found.body) == ("complete", "Title", "# Title\r\nbody\r\n")


def test_set_status_is_what_discovery_reads_next(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": NONE + "# X\n"})
    set_status(tasks_dir / "a" / "01-x.md", "complete")
    assert discover(tasks_dir).units["a"].tasks[0].status == "complete"


# -- problems ------------------------------------------------------------------------------


def test_problem_str_names_file_and_field() -> None:
    path = Path("units/api/02-routes.md")
    problem = Problem(path, "depends_on", 'task 7 does not exist in unit "api"')
    assert str(problem) == 'units/api/02-routes.md: depends_on: task 7 does not exist in unit "api"'
    assert str(Problem(path, None, "not UTF-8")) == "units/api/02-routes.md: not UTF-8"


def test_plan_invalid_message_lists_every_problem() -> None:
    problems = [Problem(Path("a.md"), "task", "one"), Problem(Path("b.md"), None, "two")]
    error = PlanInvalid(problems)
    assert error.problems == problems
    assert str(error) == "2 problems in the task files:\n  a.md: task: one\n  b.md: two"


def test_missing_tasks_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert only_problem(missing) == (
        f"{missing}: tasks directory not found: "
        "expected a directory holding <unit>/IMPLEMENTATION_PLAN.md files"
    )


def test_tasks_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    assert only_problem(path).startswith(f"{path}: not a directory: expected a directory")


def test_no_units(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"a/notes.md": "# not a unit without its plan file\n"})
    (tasks_dir / ".hidden").mkdir()
    (tasks_dir / ".hidden" / "IMPLEMENTATION_PLAN.md").write_text("")
    assert only_problem(tasks_dir) == (
        f"{tasks_dir}: no units found: expected {tasks_dir}/<unit>/IMPLEMENTATION_PLAN.md"
    )


def test_no_units_also_names_the_folders_that_lost_their_plan_file(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"a/01-x.md": NONE})
    assert problems_of(tasks_dir) == [
        f"{tasks_dir}: no units found: expected {tasks_dir}/<unit>/IMPLEMENTATION_PLAN.md",
        f"{tasks_dir}/a: holds task files (01-x.md) but no IMPLEMENTATION_PLAN.md, so it is "
        f"not a unit: add {tasks_dir}/a/IMPLEMENTATION_PLAN.md (it may be empty), or move the "
        "task files out",
    ]


def test_unknown_unit_dependency(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "api/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [db, dbb]\n---\n",
            "db/IMPLEMENTATION_PLAN.md": "",
            "ui/IMPLEMENTATION_PLAN.md": "",
        },
    )
    assert only_problem(tasks_dir) == (
        f'{tasks_dir}/api/IMPLEMENTATION_PLAN.md: depends_on: unit "dbb" does not exist; '
        "expected one of db, ui"
    )


def test_unknown_unit_dependency_with_a_single_unit(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"api/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [db]\n---\n"})
    assert only_problem(tasks_dir).endswith('unit "db" does not exist; there are no other units')


def test_unit_cycle_is_reported_once_with_its_path(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "c/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [a]\n---\n",
            "b/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [c]\n---\n",
            "a/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [b]\n---\n",
            "d/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [a]\n---\n",
        },
    )
    assert only_problem(tasks_dir) == (
        f"{tasks_dir}/a/IMPLEMENTATION_PLAN.md: depends_on: dependency cycle between units "
        "a -> b -> c -> a (each depends on the next): remove one of these dependencies"
    )


def test_separate_unit_cycles_are_each_reported(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [b]\n---\n",
            "b/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [a]\n---\n",
            "x/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [x]\n---\n",
        },
    )
    found = problems_of(tasks_dir)
    assert len(found) == 2
    assert "units a -> b -> a " in found[0]
    assert found[1].startswith(f"{tasks_dir}/x/IMPLEMENTATION_PLAN.md: depends_on: ")
    assert "units x -> x " in found[1]


def test_duplicate_task_number_names_both_files(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "api/IMPLEMENTATION_PLAN.md": "",
            "api/01-a.md": "---\ntask: 2\nbackpressure: none\n---\n",
            "api/02-b.md": "---\ntask: 2\nbackpressure: none\n---\n",
        },
    )
    assert only_problem(tasks_dir) == (
        f"{tasks_dir}/api/02-b.md: task: task number 2 is also used by {tasks_dir}/api/01-a.md: "
        'give each task of unit "api" its own number'
    )


def test_file_name_number_clashing_with_a_task_key(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "",
            "a/01-a.md": NONE,
            "a/02-b.md": "---\ntask: 1\nbackpressure: none\n---\n",
        },
    )
    assert "task number 1 is also used by" in only_problem(tasks_dir)


def test_task_depending_on_a_missing_task(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "api/IMPLEMENTATION_PLAN.md": "",
            "api/01-models.md": "---\ntask: 1\nbackpressure: none\n---\n",
            "api/02-routes.md": "---\ntask: 2\ndepends_on: [1, 7]\nbackpressure: none\n---\n",
        },
    )
    assert only_problem(tasks_dir) == (
        f'{tasks_dir}/api/02-routes.md: depends_on: task 7 does not exist in unit "api"; '
        "its tasks are 1, 2"
    )


def test_task_cycle_within_a_unit(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "api/IMPLEMENTATION_PLAN.md": "",
            "api/01-a.md": "---\ndepends_on: [3]\nbackpressure: none\n---\n",
            "api/02-b.md": "---\ndepends_on: [1]\nbackpressure: none\n---\n",
            "api/03-c.md": "---\ndepends_on: [2]\nbackpressure: none\n---\n",
            "api/04-d.md": "---\ndepends_on: [4]\nbackpressure: none\n---\n",
        },
    )
    assert problems_of(tasks_dir) == [
        f"{tasks_dir}/api/01-a.md: depends_on: dependency cycle between tasks 1 -> 3 -> 2 -> 1 "
        "(each depends on the next): remove one of these dependencies",
        f"{tasks_dir}/api/04-d.md: depends_on: dependency cycle between tasks 4 -> 4 "
        "(each depends on the next): remove one of these dependencies",
    ]


def test_same_task_numbers_in_different_units_are_fine(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "",
            "a/01-x.md": NONE,
            "b/IMPLEMENTATION_PLAN.md": "",
            "b/01-x.md": NONE,
        },
    )
    plan = discover(tasks_dir)
    assert [t.number for u in plan.units.values() for t in u.tasks] == [1, 1]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("done", 'the text "done"'), ("Complete", 'the text "Complete"'), ("yes", "a boolean")],
)
def test_bad_status_lists_the_allowed_values(tmp_path: Path, value: str, shown: str) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "",
            "a/01-x.md": f"---\nstatus: {value}\nbackpressure: none\n---\n",
        },
    )
    assert only_problem(tasks_dir) == (
        f"{tasks_dir}/a/01-x.md: status: expected one of pending, in_progress, complete, failed; "
        f"got {shown}"
    )


def test_unclosed_frontmatter(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "---\ndepends_on: []\n# Plan\n"})
    assert only_problem(tasks_dir) == (
        f"{tasks_dir}/a/IMPLEMENTATION_PLAN.md: frontmatter opened with '---' on line 1 is "
        "never closed: add a '---' line after the YAML"
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    task = "---\ntask: 1\nstatus: pending: now\nbackpressure: none\n---\n"
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": task})
    assert only_problem(tasks_dir).startswith(f"{tasks_dir}/a/01-x.md: invalid YAML at line 3: ")


def test_broken_task_file_does_not_cause_noise_in_its_dependents(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "",
            "a/01-x.md": "---\ntask: [\n---\n",
            "a/02-y.md": "---\ndepends_on: [1]\nbackpressure: none\n---\n",
        },
    )
    assert "invalid YAML" in only_problem(tasks_dir)


def test_not_utf8(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": ""})
    (tasks_dir / "a" / "01-x.md").write_bytes(b"---\ntask: \xff\n---\n")
    assert only_problem(tasks_dir).startswith(f"{tasks_dir}/a/01-x.md: not UTF-8 text")


def test_unreadable_file(tmp_path: Path) -> None:
    # A task file that cannot be read (chmod would not stop root, who runs CI):
    # a link to nowhere.
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": ""})
    (tasks_dir / "a" / "01-x.md").symlink_to(tmp_path / "gone.md")
    problem = only_problem(tasks_dir)
    assert problem.startswith(f"{tasks_dir}/a/01-x.md: cannot read: ")
    assert "No such file" in problem


@pytest.mark.parametrize(
    ("file", "frontmatter", "expected"),
    [
        (
            "IMPLEMENTATION_PLAN.md",
            "depends_on: b",
            'depends_on: expected a list of unit names, e.g. [api, db]; got the text "b"',
        ),
        (
            "IMPLEMENTATION_PLAN.md",
            "depends_on: [b, 12]",
            "depends_on: expected a list of unit names, e.g. [api, db]; item 2 is an integer",
        ),
        (
            "IMPLEMENTATION_PLAN.md",
            "provider: [claude]",
            "provider: expected a provider name such as claude (a string), got a list",
        ),
        (
            "01-x.md",
            "task: one",
            'task: expected a task number (an integer >= 0), got the text "one"',
        ),
        ("01-x.md", "task: true", "task: expected a task number (an integer >= 0), got a boolean"),
        ("01-x.md", "task: 1.5", "task: expected a task number (an integer >= 0), got a number"),
        ("01-x.md", "task: -1", "task: expected a task number (an integer >= 0), got an integer"),
        (
            "01-x.md",
            "depends_on: 1",
            "depends_on: expected a list of task numbers, e.g. [1, 2]; got an integer",
        ),
        (
            "01-x.md",
            "depends_on: ['1']",
            'depends_on: expected a list of task numbers, e.g. [1, 2]; item 1 is the text "1"',
        ),
        (
            "01-x.md",
            "depends_on: {a: 1}",
            "depends_on: expected a list of task numbers, e.g. [1, 2]; got a mapping",
        ),
        (
            "01-x.md",
            "backpressure: [pytest, -q]",
            "backpressure: expected a shell command (a string), got a list",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, file: str, frontmatter: str, expected: str) -> None:
    files = {"a/IMPLEMENTATION_PLAN.md": "", "b/IMPLEMENTATION_PLAN.md": ""}
    if file.startswith("01-") and not frontmatter.startswith("backpressure"):
        frontmatter += "\nbackpressure: none"
    files[f"a/{file}"] = f"---\n{frontmatter}\n---\n"
    tasks_dir = write(tmp_path, files)
    assert only_problem(tasks_dir) == f"{tasks_dir}/a/{file}: {expected}"


def test_frontmatter_that_is_not_a_mapping(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "---\n- b\n---\n"})
    assert only_problem(tasks_dir) == (
        f"{tasks_dir}/a/IMPLEMENTATION_PLAN.md: "
        "frontmatter must be a YAML mapping of 'key: value' lines, got a list"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [b, ghost]\nprovider: 3\n---\n",
            "a/01-x.md": "---\ntask: 1\nstatus: done\ndepends_on: [9]\nbackpresure: make\n---\n",
            "a/03-z.md": "# no frontmatter\n",
            "lost/01-x.md": NONE,
            "a/02-y.md": "---\ntask: 1\nbackpressure: none\n---\n",
            "b/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [c]\n---\n",
            "b/01-x.md": "---\ntask: [\n---\n",
            "b/02-y.md": "---\ntask: 2\n",
            "c/IMPLEMENTATION_PLAN.md": "---\ndepends_on: [a]\n---\n",
            "c/01-x.md": "---\n- not a mapping\n---\n",
            "c/02-y.md": "---\ndepends_on: [3]\nbackpressure: 5\n---\n",
            "c/03-z.md": "---\ndepends_on: [2]\nbackpressure: none\n---\n",
        },
    )
    u = str(tasks_dir)
    cycle_tail = "(each depends on the next): remove one of these dependencies"
    with pytest.raises(PlanInvalid) as caught:
        discover(tasks_dir)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{u}/lost: holds task files (01-x.md) but no IMPLEMENTATION_PLAN.md, so it is not a "
        f"unit: add {u}/lost/IMPLEMENTATION_PLAN.md (it may be empty), or move the task files out",
        f'{u}/a/IMPLEMENTATION_PLAN.md: depends_on: unit "ghost" does not exist; '
        "expected one of b, c",
        f"{u}/a/IMPLEMENTATION_PLAN.md: provider: "
        "expected a provider name such as claude (a string), got an integer",
        f"{u}/a/01-x.md: status: "
        'expected one of pending, in_progress, complete, failed; got the text "done"',
        f"{u}/a/01-x.md: backpressure: {NO_COMMAND}",
        f"{u}/a/03-z.md: {NO_FRONTMATTER}",
        f"{u}/a/02-y.md: task: task number 1 is also used by {u}/a/01-x.md: "
        'give each task of unit "a" its own number',
        f'{u}/a/01-x.md: depends_on: task 9 does not exist in unit "a"; its tasks are 1, 3',
        f"{u}/b/01-x.md: invalid YAML at line 3: "
        "expected the node content, but found '<stream end>' (while parsing a flow node)",
        f"{u}/b/02-y.md: frontmatter opened with '---' on line 1 is never closed: "
        "add a '---' line after the YAML",
        f"{u}/c/01-x.md: frontmatter must be a YAML mapping of 'key: value' lines, got a list",
        f"{u}/c/02-y.md: backpressure: expected a shell command (a string), got an integer",
        f"{u}/c/02-y.md: depends_on: dependency cycle between tasks 2 -> 3 -> 2 {cycle_tail}",
        f"{u}/a/IMPLEMENTATION_PLAN.md: depends_on: dependency cycle between units "
        f"a -> b -> c -> a {cycle_tail}",
    ]
    # The warnings come with them, so that one edit fixes everything.
    assert [str(w) for w in caught.value.warnings] == [f"{u}/a/01-x.md: backpresure: {TYPO}"]
    assert str(caught.value).endswith(f"\nand 1 warning:\n  {u}/a/01-x.md: backpresure: {TYPO}")
    assert str(caught.value).startswith("14 problems in the task files:\n")


def test_relative_tasks_dir_gives_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path,
        {
            "api/IMPLEMENTATION_PLAN.md": "",
            "api/02-routes.md": "---\ndepends_on: [7]\nbackpressure: none\n---\n",
        },
    )
    monkeypatch.chdir(tmp_path)
    assert only_problem(Path("units")) == (
        'units/api/02-routes.md: depends_on: task 7 does not exist in unit "api"; its tasks are 2'
    )


# -- what slipped through before: misspelled keys, no validation, no frontmatter ------------


def test_a_good_plan_has_no_warnings_and_its_metadata_passes_quietly(good_plan: Plan) -> None:
    assert good_plan.warnings == ()


@pytest.mark.parametrize(
    ("file", "key", "meant"),
    [
        ("01-x.md", "backpresure", "backpressure"),
        ("01-x.md", "depend_on", "depends_on"),
        ("01-x.md", "stauts", "status"),
        ("01-x.md", "tasks", "task"),
        ("IMPLEMENTATION_PLAN.md", "depend_on", "depends_on"),
        ("IMPLEMENTATION_PLAN.md", "provder", "provider"),
    ],
)
def test_a_key_that_looks_misspelled_is_a_warning_naming_the_key_it_resembles(
    tmp_path: Path, file: str, key: str, meant: str
) -> None:
    files = {
        "a/IMPLEMENTATION_PLAN.md": "---\n---\n",
        "a/01-x.md": "---\nbackpressure: make\n---\n",
    }
    files[f"a/{file}"] = files[f"a/{file}"].replace("---\n", f"---\n{key}: x\n", 1)
    tasks_dir = write(tmp_path, files)
    plan = discover(tasks_dir)
    assert [str(w) for w in plan.warnings] == [
        f"{tasks_dir}/a/{file}: {key}: unknown key, ignored: did you mean {meant!r}?"
    ]


@pytest.mark.parametrize(
    ("file", "key"),
    [
        ("01-x.md", "title"),
        ("01-x.md", "prd_id"),
        ("01-x.md", "feature"),
        ("01-x.md", "unit"),  # a plan key, but nothing like a task key
        ("IMPLEMENTATION_PLAN.md", "orch_parallelism"),
        ("IMPLEMENTATION_PLAN.md", "title"),
    ],
)
def test_other_keys_are_metadata_and_pass_quietly(tmp_path: Path, file: str, key: str) -> None:
    files = {
        "a/IMPLEMENTATION_PLAN.md": "---\n---\n",
        "a/01-x.md": "---\nbackpressure: make\n---\n",
    }
    files[f"a/{file}"] = files[f"a/{file}"].replace("---\n", f"---\n{key}: x\n", 1)
    assert discover(write(tmp_path, files)).warnings == ()


def test_a_misspelled_backpressure_is_no_validation_at_all(tmp_path: Path) -> None:
    """Before, the task passed on the agent's exit code and was marked complete."""
    task = "---\nbackpresure: pytest -q\n---\n# X\n"
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": task})
    with pytest.raises(PlanInvalid) as caught:
        discover(tasks_dir)
    assert [str(p) for p in caught.value.problems] == [
        f"{tasks_dir}/a/01-x.md: backpressure: {NO_COMMAND}"
    ]
    assert [str(w) for w in caught.value.warnings] == [
        f"{tasks_dir}/a/01-x.md: backpresure: {TYPO}"
    ]


@pytest.mark.parametrize(
    "frontmatter", ["task: 1", "backpressure:", "backpressure: null", "backpressure: '  '", ""]
)
def test_a_task_without_a_validation_command_is_an_error(tmp_path: Path, frontmatter: str) -> None:
    task = f"---\n{frontmatter}\n---\n# X\n"
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": task})
    assert only_problem(tasks_dir) == f"{tasks_dir}/a/01-x.md: backpressure: {NO_COMMAND}"


@pytest.mark.parametrize("text", ["# Just a heading\n\nDo the thing.\n", ""])
def test_a_task_file_without_frontmatter_is_an_error(tmp_path: Path, text: str) -> None:
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "", "a/01-x.md": text})
    assert only_problem(tasks_dir) == f"{tasks_dir}/a/01-x.md: {NO_FRONTMATTER}"


def test_a_plan_file_needs_no_frontmatter(tmp_path: Path) -> None:
    tasks_dir = write(tmp_path, {"a/IMPLEMENTATION_PLAN.md": "# Plan\n", "a/01-x.md": NONE})
    assert list(discover(tasks_dir).units) == ["a"]


def test_a_folder_of_task_files_without_a_plan_file_is_reported(tmp_path: Path) -> None:
    tasks_dir = write(
        tmp_path,
        {
            "a/IMPLEMENTATION_PLAN.md": "",
            "a/01-x.md": NONE,
            "b/02-y.md": NONE,
            "b/01-x.md": NONE,
            "notes/README.md": "a folder without task files is not a unit, and fine\n",
            ".drafts/01-x.md": NONE,
        },
    )
    assert only_problem(tasks_dir) == (
        f"{tasks_dir}/b: holds task files (01-x.md, 02-y.md) but no IMPLEMENTATION_PLAN.md, so "
        f"it is not a unit: add {tasks_dir}/b/IMPLEMENTATION_PLAN.md (it may be empty), or move "
        "the task files out"
    )
