"""The History tab's run list: per repository, status filter, cursor paging, empty state."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from playwright.sync_api import Page, expect

from tests.browser.conftest import Example
from tests.browser.support import FakeRun, Writer


def runs_on_page(page: Page) -> list[str]:
    rows = page.locator("tr[data-run]")
    expect(rows.first).to_be_visible()
    ids: list[str] = rows.evaluate_all("rows => rows.map(r => r.dataset.run)")
    return ids


def test_run_list_shows_the_runs_of_the_picked_repository(
    page: Page, example: Example, writer: Writer
) -> None:
    other = FakeRun(writer, "run_20260101_000000_0the", "/srv/other-repo").start()
    other.send(other.unit_events("config"))
    other.complete("failed", completed_units=1, failed_units=1, blocked_units=4)

    page.goto(f"/#/history?repo={quote(str(example.repo))}")
    row = page.locator(f"tr[data-run='{example.run_id}']")
    expect(row).to_be_visible()
    assert runs_on_page(page) == [example.run_id]
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.locator(".units")).to_have_text(re.compile(r"✓ 6\s*/ 6"))
    expect(row).to_contain_text(re.compile(r"\d+(\.\d)? s"))  # its duration
    expect(page.locator(".page-info")).to_have_text("1–1 of 1 runs · page 1")

    # The picker lists every repository with history; picking one shows its runs.
    expect(page.locator("#repo option[value='/srv/other-repo']")).to_have_count(1)
    page.select_option("#repo", "/srv/other-repo")
    expect(page).to_have_url(re.compile(r"repo=%2Fsrv%2Fother-repo"))
    expect(page.locator(f"tr[data-run='{other.run_id}']")).to_be_visible()
    assert runs_on_page(page) == [other.run_id]
    expect(page.locator(f"tr[data-run='{other.run_id}'] .units")).to_have_text(
        re.compile(r"✓ 1\s*✗ 1\s*⊘ 4\s*/ 6")
    )

    # Clicking a run opens it.
    page.locator(f"tr[data-run='{other.run_id}']").click()
    expect(page).to_have_url(re.compile(rf"run={other.run_id}"))
    expect(page.locator("h1.run-id")).to_have_text(other.run_id)


def test_status_filter_and_cursor_paging_live_in_the_url(page: Page, writer: Writer) -> None:
    repo = "/srv/paging"
    base = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    statuses = ["completed", "failed", "completed", "stopped", "completed"]
    ids = []
    for n, status in enumerate(statuses):
        run = FakeRun(
            writer,
            f"run_20260301_0{n}0000_page",
            repo,
            started=base + timedelta(hours=n),
            dry_run=n == 4,
        ).start()
        run.send(run.unit_events("config"))
        run.complete(status, completed_units=1)
        ids.append(run.run_id)
    newest_first = ids[::-1]

    page.goto(f"/#/history?repo={quote(repo)}&limit=2")
    assert runs_on_page(page) == newest_first[:2]
    expect(page.locator(".page-info")).to_have_text("1–2 of 5 runs · page 1")
    expect(page.locator(f"tr[data-run='{ids[4]}'] .badge")).to_have_text("dry run")
    expect(page.locator(f"tr[data-run='{ids[3]}'] .badge")).to_have_text("stopped")
    # Started is shown in local time (the browser's zone here is the machine's).
    local = page.evaluate(
        "iso => { const d = new Date(iso); const p = n => String(n).padStart(2, '0');"
        " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} "
        "${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` }",
        (base + timedelta(hours=4)).isoformat(),
    )
    expect(page.locator(f"tr[data-run='{ids[4]}']")).to_contain_text(local)

    page.get_by_role("link", name="Older ›").click()
    expect(page.locator(".page-info")).to_have_text("3–4 of 5 runs · page 2")
    assert runs_on_page(page) == newest_first[2:4]
    page.reload()  # the cursor is in the URL
    expect(page.locator(".page-info")).to_have_text("3–4 of 5 runs · page 2")
    assert runs_on_page(page) == newest_first[2:4]

    page.get_by_role("link", name="Older ›").click()
    expect(page.locator(".page-info")).to_have_text("5–5 of 5 runs · page 3")
    assert runs_on_page(page) == newest_first[4:]
    expect(page.get_by_role("link", name="Older ›")).to_have_count(0)

    page.get_by_role("link", name="‹ Newer").click()
    expect(page.locator(".page-info")).to_have_text("3–4 of 5 runs · page 2")
    page.get_by_role("link", name="‹ Newer").click()
    expect(page.locator(".page-info")).to_have_text("1–2 of 5 runs · page 1")
    assert runs_on_page(page) == newest_first[:2]

    page.select_option(".status-filter", "completed")
    expect(page).to_have_url(re.compile(r"status=completed"))
    expect(page.locator(".page-info")).to_have_text("1–2 of 3 runs · page 1")
    page.reload()
    expect(page.locator(".status-filter")).to_have_value("completed")
    assert runs_on_page(page) == [ids[4], ids[2]]

    page.select_option(".status-filter", "running")
    expect(page.locator(".notice")).to_contain_text("No running runs in this repository.")


def test_empty_history_says_how_to_start(page: Page) -> None:
    page.goto(f"/#/history?repo={quote('/srv/never-run')}")
    expect(page.locator(".notice")).to_contain_text("No runs recorded for this repository yet.")
    expect(page.locator(".runs")).to_contain_text("choo run specs/tasks")
    # A repository nobody ran anything in still shows in the picker, as picked.
    expect(page.locator("#repo")).to_have_value("/srv/never-run")


def test_a_dry_run_looks_like_one(page: Page, writer: Writer) -> None:
    """Not "completed ✓ 0/6": the list, the header and the graph say it was planned, not run."""
    run = FakeRun(writer, "run_20260302_100000_dryr", "/srv/dry", dry_run=True).start()
    run.send([run.event("orch.started", units=6, parallelism=2)])
    run.complete("completed")

    page.goto(f"/#/history?repo={quote('/srv/dry')}")
    row = page.locator(f"tr[data-run='{run.run_id}']")
    expect(row.locator(".badge")).to_have_text("dry run")
    expect(row.locator(".units")).to_have_text("6 planned")
    expect(row).not_to_contain_text("✓")

    row.locator("a").click()
    expect(page.locator(".run-head .badge")).to_have_text("dry run")
    expect(page.locator(".run-head .stat", has_text="units")).to_contain_text("6 planned")
    expect(page.locator(".run-head")).not_to_contain_text("✓")
    expect(page.locator("g.node[data-status='planned']")).to_have_count(6)
    expect(page.locator("g.node[data-unit='config'] .node-meta")).to_have_text("planned")
    expect(page.locator(".legend")).to_have_text("planned 6")


def test_the_run_list_jumps_to_either_end_and_its_url_stays_short(
    page: Page, writer: Writer
) -> None:
    repo = "/srv/many-pages"
    base = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    ids = []
    for n in range(41):
        run = FakeRun(
            writer, f"run_20260201_{n:06d}_many", repo, started=base + timedelta(minutes=n)
        )
        run.start(graph=False)
        run.complete("completed")
        ids.append(run.run_id)
    newest_first = ids[::-1]

    page.goto(f"/#/history?repo={quote(repo)}&limit=2")
    expect(page.locator(".page-info")).to_have_text("1–2 of 41 runs · page 1")
    expect(page.get_by_role("link", name="« Newest")).to_have_count(0)
    lengths = []
    for n in range(2, 16):
        page.get_by_role("link", name="Older ›").click()
        expect(page.locator(".page-info")).to_have_text(
            f"{2 * n - 1}–{2 * n} of 41 runs · page {n}"
        )
        lengths.append(len(page.url))
    assert runs_on_page(page) == newest_first[28:30]
    # Only the current position is in the URL: it does not grow with the pages.
    assert max(lengths) == min(lengths) and max(lengths) < 250, lengths

    page.get_by_role("link", name="Oldest »").click()
    expect(page.locator(".page-info")).to_have_text("40–41 of 41 runs · page 21")
    assert runs_on_page(page) == newest_first[-2:]
    expect(page.get_by_role("link", name="Older ›")).to_have_count(0)
    page.get_by_role("link", name="‹ Newer").click()
    expect(page.locator(".page-info")).to_have_text("38–39 of 41 runs · page 20")
    assert runs_on_page(page) == newest_first[37:39]
    page.reload()  # the position is in the URL
    expect(page.locator(".page-info")).to_have_text("38–39 of 41 runs · page 20")

    page.get_by_role("link", name="« Newest").click()
    expect(page.locator(".page-info")).to_have_text("1–2 of 41 runs · page 1")
    assert runs_on_page(page) == newest_first[:2]
