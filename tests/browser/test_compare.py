"""Comparing two runs in the browser: two real runs of one plan (the fake agent
fails a task in the first and passes it in the second), picked in the run
list, shown side by side with their deltas and both graphs in one layout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page, expect

from tests.browser.conftest import PageErrors
from tests.browser.support import CHOO, Site
from tests.choo.support import make_repo, plan_md, task_md


def run_plan(site: Site, root: Path) -> int:
    """``choo run specs/tasks`` in ``root`` to its end; its exit code."""
    result = subprocess.run(
        [str(CHOO), "run", "specs/tasks"],
        cwd=root,
        env=site.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode


def test_two_runs_of_a_plan_side_by_side(page: Page, site: Site, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"  # the api task passes once this exists
    files = {
        "core/IMPLEMENTATION_PLAN.md": plan_md(),
        "core/01-base.md": task_md(1, "Base"),
        "api/IMPLEMENTATION_PLAN.md": plan_md(depends_on=["core"]),
        "api/01-routes.md": task_md(1, "Routes", f"AGENT:fail-unless={fixed}"),
        "docs/IMPLEMENTATION_PLAN.md": plan_md(depends_on=["api"]),
        "docs/01-guide.md": task_md(1, "Guide"),
    }
    repo = make_repo(tmp_path / "plan", files, config={"attempts": 2})
    assert run_plan(site, repo.root) == 1  # api fails twice, docs is blocked
    fixed.write_text("yes\n")
    repo.write(files)  # the plan as it was, every task pending again
    assert run_plan(site, repo.root) == 0
    root = str(repo.root.resolve())
    runs = site.get_json("/api/history/runs", repo=root)["runs"]
    second, first = (r["id"] for r in runs)  # newest first

    # Tick the two runs in the run list; Compare opens them, the earlier as A.
    page.goto(f"/#/history?repo={quote(root)}")
    compare = page.locator("a.compare-runs")
    expect(compare).to_have_text("Compare (0/2 ticked)")
    page.locator(f"tr[data-run='{second}'] input.pick-run").check()
    expect(page).to_have_url(re.compile(r"#/history"))  # ticking does not open the run
    page.locator(f"tr[data-run='{first}'] input.pick-run").check()
    expect(compare).to_have_text("Compare 2 runs")
    compare.click()
    expect(page).to_have_url(re.compile(rf"#/compare\?.*a={first}&b={second}"))

    units = page.locator(".compare-units tbody tr")
    expect(units).to_have_count(3)
    api = page.locator(".compare-units tr[data-unit='api']")
    expect(api).to_have_attribute("data-changed", "true")
    expect(api.locator("td.cmp-outcome").nth(0)).to_contain_text("failed")
    expect(api.locator("td.cmp-outcome").nth(1)).to_contain_text("completed")
    # Attempts (the second figure): 2 in A, 1 in B, one fewer, which is better.
    attempts = api.locator("td.delta").nth(1)
    expect(attempts).to_have_text("−1")
    expect(attempts).to_have_class(re.compile(r"\bdown\b"))
    expect(attempts).to_have_attribute("data-delta", "-1")
    docs = page.locator(".compare-units tr[data-unit='docs']")
    expect(docs).to_have_attribute("data-changed", "true")
    expect(docs.locator("td.cmp-outcome").nth(0)).to_contain_text("blocked")
    core = page.locator(".compare-units tr[data-unit='core']")
    expect(core).to_have_attribute("data-changed", "false")
    expect(core.locator("td.delta").nth(1)).to_have_text("=")
    task = page.locator(".compare-tasks tr[data-unit='api'][data-task='1']")
    expect(task).to_have_attribute("data-changed", "true")
    # Three attempts in each run: api's second went to docs, blocked in A.
    expect(page.locator(".compare-summary tr[data-figure='attempts'] td.delta")).to_have_text("=")
    expect(page.locator(".compare-changed")).to_have_text("2 units and 2 tasks changed.")

    # Both graphs, in one layout: the same place for every unit; changed ones marked.
    for side, status in (("a", "failed"), ("b", "completed")):
        node = page.locator(f".compare-graph.side-{side} .node[data-unit='api']")
        expect(node).to_have_attribute("data-status", status)
        expect(node).to_have_class(re.compile(r"\bchanged\b"))
        expect(
            page.locator(f".compare-graph.side-{side} .node[data-unit='core']")
        ).not_to_have_class(re.compile(r"\bchanged\b"))
    places = page.evaluate(
        """() => Object.fromEntries(["a", "b"].map((side) => [side,
             [...document.querySelectorAll(`.compare-graph.side-${side} .node[data-unit]`)]
               .map((n) => { const box = n.querySelector(".node-box");
                 return [n.dataset.unit, box.getAttribute("x"), box.getAttribute("y")]; })
               .sort()]))"""
    )
    assert places["a"] == places["b"] and len(places["a"]) == 3, places

    # Clicking a unit in a graph picks its row; Swap turns every delta over.
    page.locator(".compare-graph.side-b .node[data-unit='docs']").click()
    expect(docs).to_have_class(re.compile(r"\bselected\b"))
    page.get_by_role("link", name="Swap A and B").click()
    expect(page).to_have_url(re.compile(rf"a={second}&b={first}"))
    expect(page.locator(".compare-units tr[data-unit='api'] td.delta").nth(1)).to_have_text("+1")

    # From a run, "Compare with…" lists the other runs of its repository.
    page.goto(f"/#/history?run={first}")
    page.get_by_role("link", name="Compare with…").click()
    expect(page).to_have_url(re.compile(rf"#/compare\?a={first}$"))
    page.locator(f".compare-pick tr[data-run='{second}'] a").click()
    expect(page).to_have_url(re.compile(rf"a={first}&b={second}"))
    expect(page.locator(".compare-units tbody tr")).to_have_count(3)


def test_an_unknown_run_says_so(page: Page, page_errors: PageErrors) -> None:
    page_errors.allowed.append("404")  # the browser logs the API's answer
    page.goto("/#/compare?a=run_nope_a&b=run_nope_b")
    expect(page.locator(".notice h2")).to_have_text("Run not found")
    expect(page.locator(".notice")).to_contain_text("a: no run 'run_nope_a'")
