"""A run with 100k events opens at once and keeps only the rows in view in the DOM.

How fast it opens is printed (run pytest with -s to see it), not asserted:
timings belong to the benchmarks. What is asserted is what makes it fast:
the page fetches a few hundred events to open, not the run, and the DOM
holds a bounded number of rows wherever the user scrolls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, Request, expect

from tests.browser.support import FakeRun, Site, Writer, big_run_events, send_many
from tests.conftest import Summary

EVENTS = 100_000
MAX_ROWS = 80  # a 800 px window shows about 20 rows; the rest is overscan


def units(levels: int = 5, width: int = 4) -> dict[str, Sequence[str]]:
    """width units per level, each depending on two units of the level before."""
    out: dict[str, Sequence[str]] = {}
    for level in range(levels):
        for i in range(width):
            deps = [] if level == 0 else [f"u{level - 1}{i}", f"u{level - 1}{(i + 1) % width}"]
            out[f"u{level}{i}"] = deps
    return out


@pytest.fixture(scope="module")
def big_run(writer: Writer) -> str:
    run = FakeRun(writer, "run_20260301_150000_big0", "/srv/big", units=units(), tasks=10)
    run.start()
    send_many(run, big_run_events(run, EVENTS))
    run.complete("completed", completed_units=20)
    return run.run_id


def rows(page: Page) -> list[int]:
    seqs: list[int] = page.locator(".ev[data-seq]").evaluate_all(
        "rows => rows.map(r => +r.dataset.seq)"
    )
    return seqs


def test_100k_event_run_opens_with_few_rows_in_the_dom(
    page: Page, big_run: str, summary: Summary
) -> None:
    fetched: list[int] = []  # events asked for by unfiltered pages (the timeline's own)

    def on_request(request: Request) -> None:
        url = urlparse(request.url)
        query = parse_qs(url.query)
        if url.path.endswith("/events") and "type" not in query and "unit" not in query:
            fetched.append(int(query["limit"][0]))

    page.on("request", on_request)
    started = time.perf_counter()
    page.goto(f"/#/history?run={big_run}")
    expect(page.locator(".ev[data-seq='1']")).to_be_visible()
    opened = page.evaluate("performance.now()")
    expect(page.locator("g.node")).to_have_count(20)
    summary(
        f"100k-event run: first rows after {opened:.0f} ms (page clock), "
        f"{(time.perf_counter() - started) * 1000:.0f} ms (test clock)"
    )
    expect(page.locator(".tl-count")).to_have_text("100,000 events")
    expect(page.locator("g.node[data-status='completed']")).to_have_count(20)
    assert sum(fetched) <= 1000, fetched
    assert len(rows(page)) <= MAX_ROWS

    viewport = page.locator(".tl-viewport")
    viewport.evaluate("v => { v.scrollTop = v.scrollHeight / 2 }")
    expect(page.locator(".ev[data-seq='50001']")).to_be_visible()
    seqs = rows(page)
    assert len(seqs) <= MAX_ROWS
    assert min(seqs) > 49_900 and max(seqs) < 50_100, (min(seqs), max(seqs))

    # Scrolling step by step (as a wheel would) keeps the rows coming.
    for _ in range(5):
        page.mouse.move(640, 600)
        page.mouse.wheel(0, 2400)
    expect(page.locator(".ev.loading")).to_have_count(0)
    assert len(rows(page)) <= MAX_ROWS

    page.get_by_role("button", name="Latest ↓").click()
    expect(page.locator(f".ev[data-seq='{EVENTS}']")).to_be_visible()
    assert len(rows(page)) <= MAX_ROWS
    assert page.locator(".ev").count() <= MAX_ROWS
    # Pages were fetched for what was looked at only.
    assert sum(fetched) <= 6000, len(fetched)


def test_latest_and_end_reach_the_end_of_a_filtered_view_at_once(
    page: Page, big_run: str, site: Site
) -> None:
    events = f"/api/history/runs/{big_run}/events"
    last = site.get_json(events, type="task.", before=EVENTS + 1, limit=1)
    (final,) = last["events"]
    pages: list[str] = []
    page.on("request", lambda r: "/events" in r.url and "type=" in r.url and pages.append(r.url))

    page.goto(f"/#/history?run={big_run}&type=task.")
    expect(page.locator(".ev[data-seq]").first).to_be_visible()
    # The count is the API's (a lower bound past its cap), before anything is scrolled.
    plus = "" if last["total_exact"] else "+"
    expect(page.locator(".tl-count")).to_have_text(f"{last['total']:,}{plus} matching events")

    page.get_by_role("button", name="Latest ↓").click()
    expect(page.locator(f".ev[data-seq='{final['seq']}']")).to_be_visible()
    assert len(pages) <= 3, pages  # the first page, the last one: no walk through the rest
    assert len(rows(page)) <= MAX_ROWS

    # Scrolling up from the end loads the pages before it, in seq order.
    viewport = page.locator(".tl-viewport")
    viewport.evaluate("v => { v.scrollTop = 0 }")
    # The rows follow the scroll at the next render: wait for them, not for a moment.
    page.wait_for_function(
        """(last) => {
          const seqs = [...document.querySelectorAll(".ev[data-seq]")].map((e) => +e.dataset.seq);
          return seqs.length > 0 && !document.querySelector(".ev.loading")
            && Math.max(...seqs) < last;
        }""",
        arg=final["seq"],
    )
    seqs = rows(page)
    assert seqs == sorted(seqs) and max(seqs) < final["seq"], seqs

    # End from the top of a fresh view: at once too.
    page.goto(f"/#/history?run={big_run}&type=task.&unit=u00")
    expect(page.locator(".ev[data-seq]").first).to_be_visible()
    unit_last = site.get_json(events, type="task.", unit="u00", before=EVENTS + 1, limit=1)
    viewport.focus()
    before = len(pages)
    page.keyboard.press("End")
    expect(page.locator(f".ev[data-seq='{unit_last['events'][0]['seq']}']")).to_be_visible()
    assert len(pages) - before <= 1, pages[before:]
