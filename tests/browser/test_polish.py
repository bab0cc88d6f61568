"""The graph at 40 units, times and their zone, the keyboard, small screens, dark, and an axe audit.

The 38-unit plan (tests/browser/plan38.py) is what the graph has to lay out:
its geometry is read back from the SVG (labels beside counts, edges around
the nodes of the levels they cross). Each view is then audited with
axe-core (tests/browser/axe.py: fetched from npm, injected only here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.axe import axe_source, serious_violations
from tests.browser.plan38 import FAILS, PLAN38, record_plan38
from tests.browser.support import FakeRun, Site, Writer, log_in

REPO = "/srv/shop"
PagesFactory = Callable[..., Page]


@pytest.fixture(scope="module")
def plan38(writer: Writer) -> str:
    return record_plan38(writer, "run_20260310_091500_p38a", REPO).run_id


@pytest.fixture
def new_page(browser: Browser, site: Site) -> Iterator[PagesFactory]:
    """Pages of contexts with the options a test needs (zone, color scheme, size, CSP bypass)."""
    contexts = []
    errors: list[str] = []

    def make(**options: Any) -> Page:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(base_url=site.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        log_in(context, site)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: m.type == "error" and errors.append(f"console error: {m.text}"),
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


def open_run(page: Page, run_id: str) -> None:
    page.goto(f"/#/history?run={run_id}")
    expect(page.locator("g.node[data-status='completed']")).to_have_count(36)


# --- the graph ----------------------------------------------------------------

GEOMETRY = """() => {
  const overlap = (a, b) =>
    a.width > 0 && b.width > 0 &&
    a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
  const labels = [];
  for (const g of document.querySelectorAll("g.node")) {
    const box = g.querySelector(".node-box").getBBox();
    const get = (cls) => g.querySelector(cls).getBBox();
    const inside = (r) => r.width === 0 || (r.x >= box.x && r.x + r.width <= box.x + box.width);
    for (const [a, b] of [[".node-name", ".node-progress"], [".node-meta", ".node-cost"]]) {
      if (overlap(get(a), get(b)) || !inside(get(a)) || !inside(get(b)))
        labels.push(`${g.dataset.unit}: ${a} and ${b}`);
    }
  }
  const boxes = [...document.querySelectorAll("g.node")].map((g) => ({
    unit: g.dataset.unit, r: g.querySelector(".node-box").getBBox(),
  }));
  const crossings = [];
  for (const path of document.querySelectorAll("path.edge")) {
    const ends = new Set([path.dataset.from, path.dataset.to]);
    const length = path.getTotalLength();
    for (let at = 0; at <= length; at += 2) {
      const p = path.getPointAtLength(at);
      const hit = boxes.find(({ unit, r }) => !ends.has(unit) &&
        p.x > r.x + 1 && p.x < r.x + r.width - 1 && p.y > r.y + 1 && p.y < r.y + r.height - 1);
      if (hit) {
        crossings.push(`${path.dataset.to} → ${path.dataset.from} through ${hit.unit}`);
        break;
      }
    }
  }
  return { labels, crossings, edges: document.querySelectorAll("path.edge").length };
}"""


def test_graph_of_38_units_keeps_labels_off_the_counts_and_edges_off_other_nodes(
    page: Page, plan38: str
) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    open_run(page, plan38)
    found = page.evaluate(GEOMETRY)
    assert found["edges"] == sum(len(d) for d in PLAN38.values())
    assert found["labels"] == [], found["labels"]
    assert found["crossings"] == [], found["crossings"]

    # A long name is cut, and its whole name is in the tooltip.
    node = page.locator(f"g.node[data-unit='{FAILS}']")
    name = node.locator(".node-name").text_content() or ""
    assert name.endswith("…") and FAILS.startswith(name[:-1]), name
    expect(node.locator("title")).to_have_text(re.compile(rf"^{FAILS}: failed"))


def view_box(page: Page) -> list[float]:
    return [float(v) for v in (page.locator("svg.graph").get_attribute("viewBox") or "").split()]


def all_nodes_in_view(page: Page) -> bool:
    result: bool = page.evaluate(
        """() => {
          const svg = document.querySelector("svg.graph");
          const [x, y, w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
          return [...document.querySelectorAll(".node-box")].every((b) => {
            const r = b.getBBox();
            return r.x >= x - 0.5 && r.y >= y - 0.5 &&
              r.x + r.width <= x + w + 0.5 && r.y + r.height <= y + h + 0.5;
          });
        }"""
    )
    return result


def test_graph_fits_its_box_and_zooms_and_pans(page: Page, plan38: str) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    open_run(page, plan38)
    box = page.locator(".graph-box")
    fitted = float(box.get_attribute("data-zoom") or 0)
    assert all_nodes_in_view(page)
    assert fitted >= 0.75, (
        f"at 1280x900 the 38-unit graph is drawn at {fitted:.2f}: too small to read"
    )

    page.get_by_role("button", name="zoom in").click()
    expect(box).not_to_have_attribute("data-zoom", f"{fitted:.3f}")
    zoomed = float(box.get_attribute("data-zoom") or 0)
    assert zoomed > fitted and not all_nodes_in_view(page)

    # The wheel zooms about the pointer; a drag pans without selecting a unit.
    bounds = box.bounding_box()
    assert bounds is not None
    cx, cy = bounds["x"] + bounds["width"] / 2, bounds["y"] + bounds["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -400)
    expect(box).not_to_have_attribute("data-zoom", f"{zoomed:.3f}")
    assert float(box.get_attribute("data-zoom") or 0) > zoomed
    before = view_box(page)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 120, cy + 40, steps=6)
    page.mouse.up()
    after = view_box(page)
    assert after[0] < before[0] and after[1] < before[1], (before, after)
    assert "unit=" not in page.url

    page.get_by_role("button", name="fit to the box").click()
    expect(box).to_have_attribute("data-zoom", f"{fitted:.3f}")
    assert all_nodes_in_view(page)


# --- keyboard -------------------------------------------------------------------


def test_keyboard_focus_is_visible_arrows_move_and_enter_opens(page: Page, plan38: str) -> None:
    open_run(page, plan38)
    # Graph nodes take the focus (Shift+Tab back from the zoom buttons), visibly; Enter filters.
    page.locator(".zoom-button").first.focus()
    page.keyboard.press("Shift+Tab")
    focused = page.locator("g.node:focus")
    expect(focused).to_have_count(1)
    unit = focused.get_attribute("data-unit")
    # Its box is drawn in the accent color (once the stroke's transition is over).
    page.wait_for_function(
        """() => {
          const box = document.querySelector("g.node:focus .node-box");
          const probe = document.createElement("i");
          probe.style.color = "var(--accent)";
          document.body.append(probe);
          const accent = getComputedStyle(probe).color;
          probe.remove();
          return getComputedStyle(box).stroke === accent;
        }"""
    )
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"unit={re.escape(quote(unit or ''))}"))
    # The view has taken the filter in (the node is marked) before Enter toggles it off:
    # the URL changes first, and an Enter before the view follows would pick the unit again.
    expect(page.locator(f"g.node.selected[data-unit='{unit}']")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page).not_to_have_url(re.compile("unit="))
    # With the focus in the graph, + zooms in and 0 fits again.
    box = page.locator(".graph-box")
    fitted = box.get_attribute("data-zoom")
    page.keyboard.press("+")
    expect(box).not_to_have_attribute("data-zoom", fitted or "")
    page.keyboard.press("0")
    expect(box).to_have_attribute("data-zoom", fitted or "")

    # The timeline: focus it, the arrows move a visible cursor, Enter opens, Escape closes.
    viewport = page.locator(".tl-viewport")
    viewport.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    cursor = page.locator(".ev.cursor")
    expect(cursor).to_have_attribute("data-seq", "3")
    assert cursor.evaluate("r => getComputedStyle(r).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page.locator(".ev.open[data-seq='3'] .ev-payload")).to_be_visible()
    expect(page).to_have_url(re.compile(r"event=3"))
    page.keyboard.press("ArrowUp")
    expect(page.locator(".ev.cursor")).to_have_attribute("data-seq", "2")
    page.keyboard.press("Escape")
    expect(page.locator(".ev.open")).to_have_count(0)
    page.keyboard.press("End")
    expect(page.locator(".ev.cursor")).to_contain_text("orch.completed")


# --- time -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timed_run(writer: Writer) -> str:
    """A run that started at 14:30:00 UTC on 20 January (15:30 in Paris), an event every 350 ms."""
    run = FakeRun(
        writer,
        "run_20260120_143000_tz01",
        "/srv/tz",
        started=datetime(2026, 1, 20, 14, 30, tzinfo=UTC),
        step=timedelta(milliseconds=350),
    ).start()
    run.send(run.unit_events("config"))
    run.complete("completed", completed_units=1)
    return run.run_id


def test_times_say_their_zone_and_rows_agree_with_the_detail(
    new_page: PagesFactory, timed_run: str
) -> None:
    page = new_page(timezone_id="Europe/Paris", locale="en-GB")
    page.goto(f"/#/history?run={timed_run}&event=1")
    row = page.locator(".ev[data-seq='1'] .ev-time")
    detail = page.locator(".ev.open .ev-detail dd").nth(1)
    head = page.locator(".tl-time-head")

    def shows(mode: str, row_text: str, detail_text: str, head_text: str) -> None:
        expect(page.locator(f".time-chip[data-time='{mode}']")).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(row).to_have_text(row_text)
        expect(detail).to_have_text(detail_text)
        expect(head).to_have_text(head_text)

    shows("local", "15:30:00.350", "2026-01-20 15:30:00.350 CET", "time (CET)")
    expect(page.locator(".stat", has_text="started")).to_contain_text("2026-01-20 15:30:00 CET")
    page.locator(".time-chip[data-time='utc']").click()
    shows("utc", "14:30:00.350", "2026-01-20 14:30:00.350 UTC", "time (UTC)")
    expect(page.locator(".stat", has_text="started")).to_contain_text("2026-01-20 14:30:00 UTC")
    page.locator(".time-chip[data-time='relative']").click()
    shows("relative", "+0:00.350", "+0:00.350 from the start", "time (from start)")
    # Remembered across a reload, and in the run list too.
    page.reload()
    shows("relative", "+0:00.350", "+0:00.350 from the start", "time (from start)")
    page.locator(".time-chip[data-time='utc']").click()
    page.goto("/#/history?repo=/srv/tz")
    expect(page.locator("tr[data-run] td", has_text="2026-01-20 14:30:00 UTC")).to_have_count(1)


# --- small screens, dark, accessibility ---------------------------------------------


def views(plan38: str) -> dict[str, tuple[str, str]]:
    """Each view: its URL and what to wait for."""
    run = f"/#/history?repo={quote(REPO)}&run={plan38}"
    return {
        "run list": (f"/#/history?repo={quote(REPO)}", "tr[data-run]"),
        "run": (run, "g.node[data-status='completed']"),
        "run, an event open": (f"{run}&event=5", ".ev.open .ev-payload"),
        "live": (f"/#/live?repo={quote(REPO)}", ".run-card"),
        "tasks": (f"/#/tasks?repo={quote(REPO)}", "tr[data-task]"),
        "run's tasks": (f"{run}&pane=tasks", ".run-tasks tbody tr"),
        "attempts": (f"{run}&task={quote(FAILS)}%3A2", "dialog.task-dialog section.attempt"),
        "lanes": (f"{run}&pane=lanes", "svg.lanes-svg[data-ready]"),
        "compare": (f"/#/compare?a={plan38}&b={plan38}", ".compare-graph.side-b g.node"),
        "search": (f"/#/search?q=repo&repo={quote(REPO)}", ".search-list"),
    }


def test_no_view_overflows_400_px_and_the_timeline_shows_time_and_type(
    new_page: PagesFactory, plan38: str
) -> None:
    page = new_page(viewport={"width": 400, "height": 800})
    for name, (url, ready) in views(plan38).items():
        page.goto(url)
        page.locator(ready).first.wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"{name}: the page is {width} px wide at 400"
    page.goto(views(plan38)["run"][0])
    row = page.locator(".ev[data-seq='3']")
    expect(row.locator(".ev-time")).to_be_visible()
    expect(row.locator(".ev-type")).to_have_text("task.started")
    expect(row.locator(".ev-unit")).to_be_hidden()
    row.click()
    expect(row.locator(".ev-detail")).to_contain_text("repo-config")


def luminance(css: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_dark_color_scheme_is_honoured(new_page: PagesFactory, plan38: str) -> None:
    for scheme, dark in (("dark", True), ("light", False)):
        page = new_page(color_scheme=scheme)
        open_run(page, plan38)
        colors = page.evaluate(
            """() => [document.body, ...['.card', '.ev-type'].map((s) => document.querySelector(s))]
                .map((el) => [getComputedStyle(el).backgroundColor, getComputedStyle(el).color])"""
        )
        body, card, text = colors
        assert (luminance(body[0]) < 0.2) is dark, (scheme, body)
        assert (luminance(card[0]) < 0.2) is dark, (scheme, card)
        assert (luminance(text[1]) > 0.5) is dark, (scheme, text)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_in_any_view(
    new_page: PagesFactory, plan38: str, scheme: str
) -> None:
    source = axe_source()
    page = new_page(bypass_csp=True, color_scheme=scheme)  # axe is injected as an inline script
    found: list[str] = []
    for name, (url, ready) in views(plan38).items():
        page.goto(url)
        page.locator(ready).first.wait_for()
        page.wait_for_function("() => !document.querySelector('.loading-block')")
        found.extend(f"{name}: {v}" for v in serious_violations(page, source))
    assert not found, "\n".join(found)
