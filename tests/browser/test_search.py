"""Search in the browser: the Search tab lists matches linked to their events, and the
run view's search box jumps from match to match; what matched is marked as text."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import PageErrors
from tests.browser.support import FakeRun, Site, Writer

OPEN = re.compile(r"\bopen\b")
CURRENT = re.compile(r"\bsearch-current\b")
IMG = '<img src=x onerror="window.__pwned=1;alert(1)">'


def _wait_indexed(site: Site, q: str, run: str, count: int) -> None:
    """Until the daemon has indexed the run's events (it indexes behind the writer)."""
    deadline = time.monotonic() + 20
    while True:
        found = site.get_json("/api/history/search", q=q, run=run)
        if found["unindexed"] == 0 and found["total"] == count:
            return
        assert time.monotonic() < deadline, f"search index never reached {count} for {q!r}"
        time.sleep(0.05)


def _watch_dialogs(page: Page) -> list[str]:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def _inert(page: Page, dialogs: list[str]) -> None:
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_search_page_lists_matches_linked_to_their_event(
    page: Page, writer: Writer, site: Site, page_errors: PageErrors
) -> None:
    dialogs = _watch_dialogs(page)
    repo = "/srv/searchable"
    run = FakeRun(writer, "run_20260302_100000_srch", repo, units={"api": []}, tasks=1).start()
    first = run.emit("task.started", "api", 1, title=f"quokka {IMG}")
    for n in range(40):
        run.emit("task.agent.tool", "api", 1, tool="Read", target=f"src/file{n}.py")
    last = run.emit("task.failed", "api", 1, reason="the quokka broke")
    run.complete("failed", failed_units=1)
    _wait_indexed(site, "quokka", run.run_id, 2)

    page.goto(f"/#/search?q=quokka&repo={quote(repo)}")
    hits = page.locator(".search-hit")
    expect(hits).to_have_count(2)
    expect(page.locator("#tab-search")).to_have_attribute("aria-current", "true")
    newest, oldest = hits.nth(0), hits.nth(1)
    expect(newest.locator(".search-run")).to_have_text(run.run_id)
    expect(newest.locator(".search-where")).to_have_text("api #1")
    expect(newest.locator(".search-snippet mark")).to_have_text("quokka")
    expect(oldest.locator(".search-snippet")).to_have_text(f"quokka {IMG}")  # text, not markup
    expect(oldest.locator(".search-snippet mark")).to_have_text("quokka")
    _inert(page, dialogs)

    oldest.locator("a").click()
    expect(page).to_have_url(f"{site.url}/#/history?repo={quote(repo, safe='')}"
                             f"&run={run.run_id}&event={first}&q=quokka")  # fmt: skip
    opened = page.locator(f".ev[data-seq='{first}']")
    expect(opened).to_have_class(OPEN)
    expect(opened).to_have_class(CURRENT)
    expect(page.locator(".run-search-input")).to_have_value("quokka")
    expect(page.locator(".run-search-count")).to_have_text("1 of 2")
    page.locator(".run-search-next").click()
    expect(page.locator(".run-search-count")).to_have_text("2 of 2")
    expect(page.locator(f".ev[data-seq='{last}']")).to_have_class(OPEN)
    _inert(page, dialogs)

    page_errors.allowed.append("status of 400")  # the bad query's answer, shown below
    page.goto('/#/search?q="quokka')
    expect(page.locator(".notice")).to_contain_text('a closing " is missing')


def test_run_search_box_jumps_between_matches_and_marks_them_as_text(
    page: Page, writer: Writer, site: Site, page_errors: PageErrors
) -> None:
    dialogs = _watch_dialogs(page)
    run = FakeRun(writer, "run_20260302_110000_srch", "/srv/box", units={"db": []}).start()
    seqs = []
    for n in range(300):
        if n in (3, 150, 290):
            seqs.append(run.emit("task.started", "db", 1, title=f"wombat {n} {IMG}"))
        else:
            run.emit("task.agent.tool", "db", 1, tool="Read", target=f"lib/{n}.py")
    run.complete("completed", completed_units=1)
    _wait_indexed(site, "wombat", run.run_id, 3)

    page.goto(f"/#/history?run={run.run_id}")
    box = page.locator(".run-search-input")
    count = page.locator(".run-search-count")
    box.fill("wombat")
    expect(count).to_have_text("1 of 3")
    current = page.locator(".ev.search-current")
    expect(current).to_have_attribute("data-seq", str(seqs[0]))
    expect(current.locator(".ev-summary mark")).to_have_text("wombat")
    box.press("Enter")
    expect(count).to_have_text("2 of 3")
    expect(current).to_have_attribute("data-seq", str(seqs[1]))
    expect(current).to_be_in_viewport()
    page.locator(".run-search-next").click()
    expect(count).to_have_text("3 of 3")
    box.press("Enter")  # round to the first
    expect(count).to_have_text("1 of 3")
    box.press("Shift+Enter")  # and back to the last
    expect(count).to_have_text("3 of 3")
    expect(current).to_have_attribute("data-seq", str(seqs[2]))

    # The hostile string as the query: found, marked word by word, still text.
    box.fill(IMG)
    expect(count).to_have_text("1 of 3")
    expect(current.locator(".ev-summary")).to_contain_text(f"title wombat 3 {IMG}")
    marks = current.locator(".ev-summary mark")
    expect(marks.first).to_have_text("img")
    assert "onerror" in marks.all_text_contents()
    _inert(page, dialogs)

    box.fill("nothing-of-the-sort")
    expect(count).to_have_text("no match")
    expect(page.locator(".ev mark")).to_have_count(0)
    page_errors.allowed.append("status of 400")  # the bad query's answer, shown below
    box.fill('"open')
    expect(count).to_contain_text('a closing " is missing')
