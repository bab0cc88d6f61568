"""What the agents did and cost, as the UI shows it: the run header, the graph,
a run's tasks and each task's attempts side by side, the History list's cost
column, and the Tasks tab (a repository's tasks across its runs).

Every value shown is checked against what the API answers for it.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Locator, Page, expect

from tests.browser.agents import Attempt, api, unit_events
from tests.browser.support import FakeRun, Site, Writer

UNITS = {"config": [], "api": ["config"]}

READ = ("Read", "config/settings.py", None, False)
TEST_OK = ("Bash", "python3 -m pytest -q tests/test_settings.py", 0, False)
EDIT = ("Edit", "config/settings.py", None, None)
TEST_FAIL = ("Bash", "python3 -m pytest -q tests/test_env.py", 1, True)

FAILED_OUTPUT = "FAILED tests/test_env.py::test_override - AssertionError: 'x' != 'y'"


def plan(*, flaky: bool = True) -> dict[str, dict[int, tuple[str, list[Attempt]]]]:
    """config: two tasks (the second passes on its second attempt); api: one passes, one fails."""
    second = (
        [
            Attempt(
                passed=False,
                tools=[READ, TEST_FAIL],
                cost_usd=0.31,
                validation_output=FAILED_OUTPUT,
            ),
            Attempt(tools=[EDIT, TEST_OK], cost_usd=0.42, cost_estimated=True, session_id="sess-2"),
        ]
        if flaky
        else [Attempt(tools=[EDIT, TEST_OK], cost_usd=0.27)]
    )
    return {
        "config": {
            1: ("Settings loader", [Attempt(tools=[READ, TEST_OK, EDIT], cost_usd=0.27)]),
            2: ("Environment overrides", second),
        },
        "api": {
            1: ("Routes", [Attempt(tools=[READ], cost_usd=0.05, input_tokens=45_000)]),
            2: (
                "Error pages",
                [
                    Attempt(passed=False, stop_reason="agent_max_turns", status="error_max_turns"),
                    Attempt(passed=False, tools=[TEST_FAIL], validation_output=FAILED_OUTPUT),
                ],
            ),
        },
    }


def agent_run(
    writer: Writer, run_id: str, repo: str, started: datetime | None = None, **kw: Any
) -> FakeRun:
    run = FakeRun(writer, run_id, repo, units=dict(UNITS))
    if started:
        run.started = run.clock = started
    run.start()
    failed = 0
    for unit, tasks in plan(**kw).items():
        events = unit_events(run, unit, tasks)
        failed += events[-1]["type"] == "unit.failed"
        run.send(events)
    status = "failed" if failed else "completed"
    run.complete(status, completed_units=2 - failed, failed_units=failed)
    return run


# --- the UI's formats, to compare with the API's numbers --------------------


def usd(cost: float | None, estimated: bool | None = False) -> str:
    if cost is None:
        return "—"
    text = f"{cost:.3f}" if 0 < cost < 0.01 else f"{cost:.2f}"
    return f"{'~' if estimated else ''}${text}"


def tokens(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.{1 if n < 100_000 else 0}f}k"
    return f"{n / 1_000_000:.2f}M"


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.{1 if ms < 10_000 else 0}f} s"
    s = ms // 1000
    return f"{s // 60} m {s % 60:02d} s"


def value(box: Locator) -> Locator:
    return box.locator(".stat-value")


# --- tests ----------------------------------------------------------------------


def test_the_run_header_and_the_graph_show_cost_tokens_and_attempts(
    page: Page, writer: Writer, site: Site
) -> None:
    run = agent_run(writer, "run_20260401_100000_use1", "/srv/usage-head")
    detail = api(site, f"/api/history/runs/{run.run_id}")
    t = detail["totals"]
    assert t["cost_estimated"] is True and t["attempts"] == 6  # the fixture is what the test thinks

    page.goto(f"/#/history?run={run.run_id}")
    cost = page.locator(".stat[data-stat='cost'] .stat-value")
    expect(cost).to_have_text(usd(t["cost_usd"], True))
    assert cost.text_content().startswith("~")  # estimated, and marked so
    expect(value(page.locator(".stat[data-stat='tokens']"))).to_have_text(
        f"{tokens(t['input_tokens'])} / {tokens(t['output_tokens'])}"
    )
    cache = value(page.locator(".stat[data-stat='cache']"))
    expect(cache).to_have_text(tokens(t["cache_read_tokens"] + t["cache_write_tokens"]))
    read, written = t["cache_read_tokens"], t["cache_write_tokens"]
    expect(cache).to_have_attribute(
        "title", f"{read:,} read from the cache, {written:,} written to it"
    )
    expect(value(page.locator(".stat[data-stat='tools']"))).to_have_text(
        f"{t['tool_calls']} / {t['attempts']}"
    )

    units = api(site, f"/api/history/runs/{run.run_id}/units")["units"]
    assert [u["unit"] for u in units] == ["config", "api"]
    for u in units:
        node = page.locator(f"g.node[data-unit='{u['unit']}']")
        expect(node.locator(".node-cost")).to_have_text(
            f"{usd(u['cost_usd'], u['cost_estimated'])} · {u['attempts']} att"
        )
        expect(node).to_have_attribute("data-attempts", str(u["attempts"]))
        expect(node.locator("title")).to_contain_text(f"{u['attempts']} attempts")
        expect(node.locator("title")).to_contain_text(f"{u['tool_calls']} tool calls")


def test_a_tasks_attempts_open_side_by_side_from_the_runs_task_list(
    page: Page, writer: Writer, site: Site
) -> None:
    run = agent_run(writer, "run_20260401_110000_use2", "/srv/usage-tasks")
    tasks = api(site, f"/api/history/runs/{run.run_id}/tasks")["tasks"]
    page.goto(f"/#/history?run={run.run_id}")

    # From the events to the run's tasks, by keyboard.
    switch = page.locator(".tl-card .pane-link")
    switch.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"pane=tasks"))
    rows = page.locator("tr[data-task]")
    expect(rows).to_have_count(len(tasks))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.task)") == [
        f"{t['unit']}:{t['task']}" for t in tasks
    ]
    flaky = page.locator("tr[data-task='config:2']")
    expect(flaky.locator(".badge.stop")).to_have_attribute("data-stop", "passed_after_retry")
    expect(flaky.locator(".tag-flaky")).to_be_visible()
    expect(flaky.locator("td.n-attempts")).to_have_text("2")
    expect(page.locator("tr[data-task='api:2'] .badge.stop")).to_have_attribute(
        "data-stop", "validation_failed"
    )

    # Selecting a unit in the graph narrows the list to it.
    page.locator("g.node[data-unit='api']").click()
    expect(rows).to_have_count(2)
    page.locator("g.node[data-unit='api']").click()
    expect(rows).to_have_count(len(tasks))

    # Open one: its attempts, side by side, each as the API says.
    link = flaky.locator("a")
    link.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"task=config%3A2"))
    check_dialog(page, site, run.run_id, "config", 2)

    # Escape closes it, and the URL forgets it; the back button is not needed.
    page.keyboard.press("Escape")
    expect(page.locator("dialog.task-dialog")).to_be_hidden()
    expect(page).not_to_have_url(re.compile(r"task="))

    # An event of a task links to its attempts too.
    page.goto(f"/#/history?run={run.run_id}&type=task.completed")
    row = page.locator(".ev[data-seq]").first
    row.click()
    row.locator("a.ev-open-task").click()
    expect(page).to_have_url(re.compile(r"task=config%3A1"))
    check_dialog(page, site, run.run_id, "config", 1)
    page.keyboard.press("Escape")

    # A link to an open task opens it on load (here: the failed one).
    page.goto(f"/#/history?run={run.run_id}&task=api%3A2")
    check_dialog(page, site, run.run_id, "api", 2)
    page.locator("dialog.task-dialog button.close").click()
    expect(page.locator("dialog.task-dialog")).to_be_hidden()
    expect(page).not_to_have_url(re.compile(r"task="))


def check_dialog(page: Page, site: Site, run_id: str, unit: str, task: int) -> None:
    data = api(site, f"/api/history/runs/{run_id}/tasks", unit=unit, task=task)
    (t,) = data["tasks"]
    dialog = page.locator("dialog.task-dialog")
    expect(dialog).to_be_visible()
    head = dialog.locator(".task-dialog-head")
    expect(head).to_contain_text(f"{unit} · task {task} — {t['title']}")
    columns = dialog.locator("section.attempt")
    expect(columns).to_have_count(len(t["attempts"]))
    # Side by side: the second column is to the right of the first, at the same height.
    if len(t["attempts"]) > 1:
        first, second = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
        assert first and second and second["x"] > first["x"] and abs(second["y"] - first["y"]) < 2
    for n, a in enumerate(t["attempts"]):
        col = columns.nth(n)

        def field(name: str, col: Locator = col) -> Locator:
            return col.locator(f"dd[data-field='{name}']")

        expect(col.locator("h3")).to_have_text(f"Attempt {a['attempt']}")
        expect(col.locator(".badge.stop")).to_have_attribute("data-stop", a["stop_reason"])
        expect(field("duration")).to_have_text(duration(a["agent_ms"] + a["validation_ms"]))
        expect(field("agent")).to_have_text(duration(a["agent_ms"]))
        expect(field("validation")).to_have_text(duration(a["validation_ms"]))
        expect(field("tokens")).to_have_text(
            f"{tokens(a['input_tokens'])} in / {tokens(a['output_tokens'])} out"
        )
        expect(field("cost")).to_have_text(usd(a["cost_usd"], a["cost_estimated"]))
        expect(field("tool_calls")).to_have_text(str(a["tool_calls"]))
        expect(field("model")).to_have_text(a["model"])
        expect(field("agent_status")).to_have_text(a["agent_status"])
        tools = col.locator("li.tool")
        expect(tools).to_have_count(len(a["tools"]))
        for i, call in enumerate(a["tools"]):
            li = tools.nth(i)
            expect(li.locator(".tool-name")).to_have_text(call["tool"])
            expect(li.locator(".tool-target")).to_have_text(call["target"])
            outcome = (
                f"✗ exit {call['exit_code']}"
                if call["is_error"] or (call["exit_code"] not in (None, 0))
                else "✓"
                if call["exit_code"] == 0 or call["is_error"] is False
                else "—"
            )
            expect(li.locator(".tool-outcome")).to_have_text(outcome)
        expect(col.locator(".validation-command")).to_have_text(a["validation_command"])
        expect(col.locator(".validation-output")).to_have_text(a["validation_output"])


def test_the_history_list_has_a_cost_column(page: Page, writer: Writer, site: Site) -> None:
    repo = "/srv/usage-list"
    run = agent_run(writer, "run_20260401_120000_use3", repo)
    older = datetime.now(UTC) - timedelta(days=1)
    bare = FakeRun(writer, "run_20260401_110000_use4", repo, started=older)
    bare.start()
    bare.complete("completed", completed_units=6)
    listed = {r["id"]: r for r in api(site, "/api/history/runs", repo=repo)["runs"]}

    page.goto(f"/#/history?repo={quote(repo)}")
    head = page.locator(".runs-table thead th")
    expect(head.filter(has_text="Cost")).to_have_count(1)
    # Right after the duration: the run's length, then what it cost.
    names = [t.strip() for t in head.all_text_contents()]
    assert names[names.index("Duration") + 1] == "Cost", names
    for run_id in (run.run_id, bare.run_id):
        r = listed[run_id]
        expect(page.locator(f"tr[data-run='{run_id}'] td.cost")).to_have_text(
            usd(r["cost_usd"] or None, r["cost_estimated"])
        )
    assert listed[bare.run_id]["cost_usd"] == 0  # no agent reported a cost: shown as none
    expect(page.locator(f"tr[data-run='{bare.run_id}'] td.cost")).to_have_text("—")


def test_the_tasks_tab_compares_a_repositorys_tasks_across_runs(
    page: Page, writer: Writer, site: Site
) -> None:
    repo = "/srv/usage-across"
    base = datetime.now(UTC) - timedelta(hours=3)
    steady = agent_run(writer, "run_20260401_130000_use5", repo, base, flaky=False)
    shaky = agent_run(writer, "run_20260401_140000_use6", repo, base + timedelta(hours=1))
    data = api(site, "/api/history/tasks", repo=repo)["tasks"]
    assert data[0]["unit"] == "config" and data[0]["task"] == 2 and data[0]["flaky_runs"] == 1

    # From the History list of that repository, by its link.
    page.goto(f"/#/history?repo={quote(repo)}")
    page.locator("a.tasks-link").click()
    expect(page).to_have_url(re.compile(r"#/tasks\?repo=%2Fsrv%2Fusage-across"))
    expect(page.locator("#tab-tasks")).to_have_attribute("aria-current", "true")
    rows = page.locator("tr[data-task]")
    expect(rows).to_have_count(len(data))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.task)") == [
        f"{t['unit']}:{t['task']}" for t in data
    ]
    expect(rows.first).to_have_class(re.compile(r"\bflaky\b"))
    for n, t in enumerate(data):
        row = rows.nth(n)
        expect(row.locator("td.title")).to_have_text(t["title"])
        expect(row.locator("td.runs")).to_have_text(str(t["runs"]))
        rate = t["first_try_pass_rate"]
        shown = "—" if rate is None else f"{round(rate * 100)}%"
        expect(row.locator("td.pass-rate")).to_have_text(shown)
        expect(row.locator("td.duration")).to_have_text(duration(t["median_duration_ms"]))
        expect(row.locator("td.tokens")).to_have_text(tokens(t["median_tokens"]))
        expect(row.locator("td.cost")).to_have_text(usd(t["median_cost_usd"], t["cost_estimated"]))
        chips = row.locator("a.outcome")
        expect(chips).to_have_count(len(t["last"]))
        for i, last in enumerate(t["last"]):
            expect(chips.nth(i)).to_have_attribute("data-run", last["run_id"])
            expect(chips.nth(i)).to_have_attribute("data-stop", last["stop_reason"] or "")
    assert {c["run_id"] for c in data[0]["last"]} == {steady.run_id, shaky.run_id}

    # An outcome opens its run, with the task's attempts open.
    chip = rows.first.locator(f"a.outcome[data-run='{shaky.run_id}']")
    chip.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"run={shaky.run_id}.*task=config%3A2"))
    expect(page.locator("dialog.task-dialog section.attempt")).to_have_count(2)

    # Without a repository, the tab asks for one.
    page.goto("/#/tasks")
    expect(page.locator(".notice h2")).to_have_text("Pick a repository")
    page.locator(".repo-list a", has_text="usage-across").click()
    expect(rows).to_have_count(len(data))


def test_a_running_runs_usage_follows_its_events(page: Page, writer: Writer, site: Site) -> None:
    run = FakeRun(writer, "run_20260401_150000_use7", "/srv/usage-live", units=dict(UNITS))
    run.start()
    page.goto(f"/#/history?run={run.run_id}")
    cost = page.locator(".stat[data-stat='cost'] .stat-value")
    expect(cost).to_have_text("—")
    expect(page.locator("g.node[data-unit='config'] .node-cost")).to_have_text("")

    run.send(unit_events(run, "config", plan()["config"]))
    # The daemon adds up a running run's events once it has a quiet moment.
    deadline = time.monotonic() + 30
    while not (t := api(site, f"/api/history/runs/{run.run_id}")["totals"])["attempts"]:
        assert time.monotonic() < deadline, "the roll-ups never caught up"
        time.sleep(0.02)
    (config,) = [
        u
        for u in api(site, f"/api/history/runs/{run.run_id}/units")["units"]
        if u["unit"] == "config"
    ]
    expect(cost).to_have_text(usd(t["cost_usd"], t["cost_estimated"]))
    expect(page.locator("g.node[data-unit='config'] .node-cost")).to_have_text(
        f"{usd(config['cost_usd'], config['cost_estimated'])} · {config['attempts']} att"
    )
    run.complete("stopped")
