"""A run's detail: graph, timeline, filters, payloads, stop/resume markers, deep links."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import Example, PageErrors
from tests.browser.support import EXAMPLE_UNITS, FakeRun, Site, Writer


def api(site: Site, path: str) -> dict[str, Any]:
    data: dict[str, Any] = site.get_json(path)
    return data


def shown(page: Page, field: str) -> list[str]:
    """The value of a data attribute of every event row in the DOM."""
    rows = page.locator(".ev[data-seq]")
    expect(rows.first).to_be_visible()
    values: list[str] = rows.evaluate_all(f"rows => rows.map(r => r.dataset.{field})")
    return values


def units_shown(page: Page) -> list[str]:
    rows = page.locator(".ev[data-seq]:not(.marker) .ev-unit")
    expect(rows.first).to_be_visible()
    return rows.all_text_contents()


def test_run_shows_its_graph_by_levels_and_its_timeline(
    page: Page, example: Example, site: Site
) -> None:
    run = api(site, f"/api/history/runs/{example.run_id}")
    page.goto(f"/#/history?run={example.run_id}")

    expect(page.locator("h1.run-id")).to_have_text(example.run_id)
    expect(page.locator(".run-head .badge")).to_have_text("completed")
    expect(page.locator("svg.graph g.node")).to_have_count(len(EXAMPLE_UNITS))
    for unit in EXAMPLE_UNITS:
        node = page.locator(f"g.node[data-unit='{unit}']")
        expect(node).to_have_attribute("data-status", "completed")
    expect(page.locator("g.node[data-unit='storage'] .node-progress")).to_have_text("2/2")
    expect(page.locator("g.node[data-unit='docs'] .node-progress")).to_have_text("1/1")
    expect(page.locator("svg.graph path.edge")).to_have_count(7)

    # One column per level: config | models, storage | api, cli | docs.
    x = {
        unit: float(page.locator(f"g.node[data-unit='{unit}'] .node-box").get_attribute("x") or 0)
        for unit in EXAMPLE_UNITS
    }
    assert x["config"] < x["models"] == x["storage"] < x["api"] == x["cli"] < x["docs"]

    expect(page.locator(".tl-count")).to_have_text(f"{run['event_count']} events")
    first = page.locator(".ev[data-seq='1']")
    expect(first).to_contain_text("orch.started")
    expect(first).to_have_class(re.compile(r"\bcat-orch\b"))
    expect(page.locator(".ev[data-seq='2']")).to_have_class(re.compile(r"\bcat-unit\b"))
    expect(page.locator(".ev[data-seq='4']")).to_have_class(re.compile(r"\bcat-task\b"))

    # The payload shows on demand.
    expect(page.locator(".ev-payload")).to_have_count(0)
    page.locator(".ev[data-seq='4']").click()
    payload = page.locator(".ev[data-seq='4'] .ev-payload")
    expect(payload).to_contain_text('"title": "Settings module"')
    expect(page).to_have_url(re.compile(r"event=4"))
    page.locator(".ev[data-seq='4'] .ev-line").click()
    expect(page.locator(".ev-payload")).to_have_count(0)


def test_filter_by_type_and_by_clicking_a_node(page: Page, example: Example) -> None:
    page.goto(f"/#/history?run={example.run_id}")
    expect(page.locator("g.node")).to_have_count(len(EXAMPLE_UNITS))

    page.locator(".chip[data-type='task.']").click()
    expect(page).to_have_url(re.compile(r"type=task\."))
    expect(page.locator(".tl-count")).to_contain_text("matching events")
    types = shown(page, "type")
    assert types and all(t.startswith("task.") for t in types), types

    page.fill(".type-filter", "task.retry")
    page.press(".type-filter", "Enter")
    expect(page).to_have_url(re.compile(r"type=task\.retry"))
    expect(page.locator(".tl-count")).to_have_text("1 matching event")
    assert shown(page, "type") == ["task.retry"]
    assert units_shown(page) == ["storage"]

    page.locator(".chip[data-type='']").click()
    page.locator("g.node[data-unit='api']").click()
    expect(page).to_have_url(re.compile(r"unit=api"))
    expect(page.locator("g.node[data-unit='api']")).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator(".unit-filter")).to_have_value("api")
    expect(page.locator(".tl-count")).to_contain_text("matching events")
    units = units_shown(page)
    assert units and set(units) == {"api"}, units

    # Clicking the selected node again shows every unit's events.
    page.locator("g.node[data-unit='api']").click()
    expect(page).not_to_have_url(re.compile(r"unit="))
    expect(page.locator(".unit-filter")).to_have_value("")
    expect(page.locator(".ev[data-seq='1']")).to_contain_text("orch.started")


def test_deep_link_reloads_to_the_same_view(page: Page, example: Example, site: Site) -> None:
    retry = api(site, f"/api/history/runs/{example.run_id}/events?type=task.retry")["events"][0]
    url = f"/#/history?run={example.run_id}&type=task.&unit=storage&event={retry['seq']}"
    page.goto(url)

    def same_view() -> None:
        expect(page.locator(".chip[data-type='task.']")).to_have_attribute("aria-pressed", "true")
        expect(page.locator(".type-filter")).to_have_value("task.")
        expect(page.locator(".unit-filter")).to_have_value("storage")
        expect(page.locator("g.node[data-unit='storage']")).to_have_class(re.compile("selected"))
        opened = page.locator(f".ev.open[data-seq='{retry['seq']}'] .ev-payload")
        expect(opened).to_be_visible()
        expect(opened).to_contain_text('"next_attempt": 2')
        types = shown(page, "type")
        assert all(t.startswith("task.") for t in types), types
        assert set(units_shown(page)) == {"storage"}

    same_view()
    page.reload()
    same_view()
    # Going back from a filter change returns to this view.
    page.locator(".chip[data-type='unit.']").click()
    expect(page.locator(".type-filter")).to_have_value("unit.")
    page.go_back()
    same_view()


def test_stop_and_resume_are_marked(page: Page, writer: Writer) -> None:
    run = FakeRun(writer, "run_20260210_101010_stop", "/srv/markers").start()
    run.send(
        [
            *run.unit_events("config"),
            run.event("unit.queued", "models", tasks=2),
            run.event("unit.started", "models", tasks=2, pending=2),
            run.event("task.started", "models", 1, title="Models part 1"),
        ]
    )
    stopped = run.emit("run.stopped", reason="SIGINT received; workers stopped", signal="SIGINT")
    run.complete("stopped", completed_units=1)
    resumed = run.resume("resumed with `choo resume`")
    rest = ["models", "storage", "api", "cli", "docs"]
    run.send([e for unit in rest for e in run.unit_events(unit)])
    run.emit("orch.completed", completed=6, failed=0, blocked=0)
    run.complete("completed", completed_units=6)

    page.goto(f"/#/history?run={run.run_id}")
    stop_chip = page.locator(".marker-chip.marker-stop")
    resume_chip = page.locator(".marker-chip.marker-resume")
    expect(stop_chip).to_contain_text("SIGINT received; workers stopped")
    expect(resume_chip).to_contain_text("resumed with `choo resume`")
    expect(stop_chip).to_contain_text(re.compile(r"\d\d:\d\d:\d\d"))
    expect(page.locator(".stat", has_text="resumes")).to_contain_text("1")
    expect(page.locator("g.node[data-status='completed']")).to_have_count(6)

    # In the timeline they are rows of their own, drawn apart from the events.
    resume_chip.click()
    row = page.locator(f".ev.marker-resume[data-seq='{resumed}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("Run resumed")
    stop_chip.click()
    expect(page.locator(f".ev.marker-stop[data-seq='{stopped}']")).to_contain_text("Run stopped")

    # A filter that hides them still shows where the run stopped and resumed.
    page.goto(f"/#/history?run={run.run_id}&type=task.completed")
    expect(page.locator(".ev.marker-stop")).to_contain_text("SIGINT received")
    expect(page.locator(".ev.marker-resume")).to_be_visible()
    seqs = [int(s) for s in shown(page, "seq")]
    assert seqs == sorted(seqs)
    before = [s for s in seqs if s < stopped]
    assert len(before) == 2  # config's two tasks, then the boundary


def test_unknown_run_says_so_after_one_request(page: Page, page_errors: PageErrors) -> None:
    asked: list[str] = []
    page.on("request", lambda r: "/api/" in r.url and asked.append(r.url))
    page.goto("/#/history?run=run_20990101_000000_none")
    expect(page.locator(".notice h2")).to_have_text("Run not found")
    expect(page.locator(".notice")).to_contain_text("run_20990101_000000_none")
    page.wait_for_load_state("networkidle")
    # One request for the run (the repository picker asks for its list on every page).
    run_requests = [url for url in asked if "/api/repos" not in url]
    (only,) = run_requests
    assert "/api/view/run?run=run_20990101_000000_none" in only, only
    # No console errors: the fixture fails the test on any (the browser logs a 404 as one).
    page.get_by_role("link", name="← Back to runs").click()
    expect(page).to_have_url(re.compile(r"#/history$"))
