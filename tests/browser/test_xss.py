"""Event text is shown as text: markup in a payload, a unit name, a repo path,
or anything an agent reported, runs nothing."""

from __future__ import annotations

from urllib.parse import quote

from playwright.sync_api import Dialog, Page, expect

from tests.browser.agents import Attempt, task_events
from tests.browser.support import FakeRun, Writer

IMG = '<img src=x onerror="window.__pwned=1;alert(1)">'
SCRIPT = "<script>window.__pwned = 2; alert('script')</script>"


def test_markup_in_events_stays_inert(page: Page, writer: Writer) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    repo = "/srv/<b>bold</b>"
    run = FakeRun(writer, "run_20260301_140000_xss0", repo, units={IMG: [], "api": [IMG]}).start()
    started = run.emit("task.started", IMG, 1, title=IMG, note=SCRIPT)
    failed = run.emit("task.failed", "api", 1, reason=SCRIPT)
    run.complete("failed", failed_units=1)

    page.goto(f"/#/history?repo={quote(repo)}")
    expect(page.locator(f"tr[data-run='{run.run_id}']")).to_be_visible()
    expect(page.locator("#repo")).to_contain_text("<b>bold</b>")

    page.goto(f"/#/history?run={run.run_id}")
    row = page.locator(f".ev[data-seq='{started}']")
    expect(row.locator(".ev-unit")).to_have_text(IMG)
    expect(row.locator(".ev-summary")).to_contain_text(f"title {IMG}")
    row.click()
    expect(row.locator(".ev-payload")).to_contain_text(SCRIPT)
    expect(page.locator(f".ev[data-seq='{failed}'] .ev-summary")).to_contain_text(SCRIPT)
    expect(page.locator(f"g.node[data-unit='{IMG}'] title")).to_contain_text(IMG)
    expect(page.locator(".unit-filter")).to_contain_text(IMG)

    # Filtering by that unit (through the graph) shows it, still as text.
    page.locator(f"g.node[data-unit='{IMG}']").click()
    expect(page.locator(".ev[data-seq] .ev-unit").first).to_have_text(IMG)

    assert page.locator("img").count() == 0
    assert page.locator("main script, main b").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_markup_in_what_agents_report_stays_inert(page: Page, writer: Writer) -> None:
    """Tool names and targets, titles, models, session IDs, validation output: all text."""
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    repo = "/srv/<i>agents</i>"
    run = FakeRun(writer, "run_20260301_150000_xss1", repo, units={IMG: []}, tasks=1).start()
    attempts = [
        Attempt(
            passed=False,
            tools=[(SCRIPT, IMG, 1, True), ("Read", SCRIPT, None, None)],
            model=IMG,
            session_id=SCRIPT,
            status=IMG,
            validation_output=IMG,
        ),
        Attempt(tools=[("Bash", IMG, 0, False)], validation_output=SCRIPT),
    ]
    run.send(task_events(run, IMG, 1, IMG, attempts))
    run.complete("completed", completed_units=1)

    page.goto(f"/#/history?run={run.run_id}&pane=tasks&task={quote(IMG)}%3A1")
    dialog = page.locator("dialog.task-dialog")
    expect(dialog.locator(".task-dialog-head")).to_contain_text(f"{IMG} · task 1 — {IMG}")
    first = dialog.locator("section.attempt").first
    expect(first.locator(".tool-name").first).to_have_text(SCRIPT)
    expect(first.locator(".tool-target").first).to_have_text(IMG)
    expect(first.locator(".tool-target").nth(1)).to_have_text(SCRIPT)
    expect(first.locator("dd[data-field='model']")).to_have_text(IMG)
    expect(first.locator("dd[data-field='session_id']")).to_have_text(SCRIPT)
    expect(first.locator("dd[data-field='agent_status']")).to_have_text(IMG)
    expect(first.locator(".validation-output")).to_have_text(IMG)
    expect(dialog.locator("section.attempt").nth(1).locator(".validation-output")).to_have_text(
        SCRIPT
    )
    page.keyboard.press("Escape")
    row = page.locator("tr[data-task]").first
    expect(row.locator("td.unit")).to_have_text(IMG)
    expect(row.locator("td.title")).to_have_text(IMG)

    page.goto(f"/#/tasks?repo={quote(repo)}")
    row = page.locator("tr[data-task]").first
    expect(row.locator("td.unit")).to_have_text(IMG)
    expect(row.locator("td.title")).to_have_text(IMG)
    expect(page.locator(".runs-toolbar .repo-path")).to_have_text(repo)

    assert page.locator("img").count() == 0
    assert page.locator("main script, main i, dialog script").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
