"""The Live tab: runs appear and update as their events arrive; the daemon may go and come back."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import PageErrors
from tests.browser.support import FakeRun, Site, Writer, log_in, new_site, remove_site


def test_live_view_follows_runs_without_reload(page: Page, writer: Writer) -> None:
    repo = "/srv/live"
    page.goto(f"/#/live?repo={quote(repo)}")
    expect(page.locator(".live-main .notice h2")).to_have_text("Nothing is running")

    run = FakeRun(writer, "run_20260301_120000_live", repo).start()
    card = page.locator(f".running-list .run-card[data-run='{run.run_id}']")
    expect(card).to_be_visible()
    # With nothing picked, the new run is shown in full.
    expect(page).to_have_url(re.compile(rf"run={run.run_id}"))
    expect(page.locator(".run-head .badge")).to_have_text("running")
    expect(page.locator("g.node")).to_have_count(6)
    expect(page.locator("g.node[data-unit='config']")).to_have_attribute("data-status", "pending")

    run.send([run.event("orch.started", units=6, parallelism=2), *run.unit_events("config")])
    expect(page.locator("g.node[data-unit='config']")).to_have_attribute("data-status", "completed")
    expect(page.locator("g.node[data-unit='config'] .node-progress")).to_have_text("2/2")
    expect(page.locator(f".ev[data-seq='{run.seq}']")).to_contain_text("unit.completed")
    expect(card.locator(".rc-meta")).to_contain_text("✓ 1")

    run.send(
        [
            run.event("unit.queued", "models", tasks=2),
            run.event("unit.started", "models", tasks=2, pending=2),
            run.event("task.started", "models", 1, title="Models part 1"),
            run.event("task.completed", "models", 1, title="Models part 1"),
        ]
    )
    models = page.locator("g.node[data-unit='models']")
    expect(models).to_have_attribute("data-status", "running")
    expect(models.locator(".node-progress")).to_have_text("1/2")
    expect(page.locator(".tl-count")).to_have_text(f"{run.seq} events")
    expect(card.locator(".rc-last")).to_have_text("task.completed · models")

    # A second run starting now appears too; the one on screen stays.
    other = FakeRun(writer, "run_20260301_120500_next", repo).start()
    expect(page.locator(f".running-list .run-card[data-run='{other.run_id}']")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"run={run.run_id}"))

    # The first one ends: its card moves to Recent, the detail shows how it ended.
    run.send(
        [
            run.event("task.failed", "models", 2, reason="gave up"),
            run.event("unit.failed", "models"),
            *(run.event("unit.blocked", u, blocked_by="models") for u in ("api", "cli", "docs")),
        ]
    )
    expect(page.locator("g.node[data-unit='docs']")).to_have_attribute("data-status", "blocked")
    expect(page.locator("g.node[data-unit='storage']")).to_have_attribute("data-status", "pending")
    run.complete("failed", completed_units=1, failed_units=1, blocked_units=3)
    recent = page.locator(f".recent-list .run-card[data-run='{run.run_id}']")
    expect(recent.locator(".badge")).to_have_text("failed")
    expect(page.locator(".run-head .badge")).to_have_text("failed")
    expect(page.locator(f".running-list .run-card[data-run='{run.run_id}']")).to_have_count(0)

    other.complete("stopped")
    expect(page.locator(".running-list")).to_contain_text("Nothing running.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def own_daemon() -> Iterator[Site]:
    site = new_site()
    try:
        site.start(free_port())
        yield site
    finally:
        remove_site(site)


def test_banner_while_the_daemon_is_away(browser: Browser) -> None:
    with own_daemon() as site:
        context = browser.new_context(base_url=site.url)
        context.set_default_timeout(15_000)
        log_in(context, site)
        page = context.new_page()
        errors = PageErrors()
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            page.goto("/#/live")
            expect(page.locator(".live-main .notice h2")).to_have_text("Nothing is running")
            banner = page.locator("#banner")
            expect(banner).to_be_hidden()

            site.stop()
            expect(banner).to_be_visible()
            expect(banner).to_contain_text("choo daemon start")

            site.start(site.port)
            expect(banner).to_be_hidden()
            # The live stream is back: a run started now shows up.
            writer = Writer(site.home)
            try:
                FakeRun(writer, "run_20260301_130000_back", "/srv/back").start()
                expect(
                    page.locator(".run-card[data-run='run_20260301_130000_back']")
                ).to_be_visible()
            finally:
                writer.close()
        finally:
            context.close()
        assert not errors, errors


def test_a_run_view_told_to_catch_up_fetches_the_gap(
    page: Page, writer: Writer, site: Site
) -> None:
    """The daemon's answer to a stream that fell behind its run (a catchup message,
    then the newest events) is played to the page once; it fetches the gap through
    the events API, then goes on live with the daemon's own stream."""
    run = FakeRun(writer, "run_20260301_140000_gap", "/srv/gap").start()
    run.send([run.event("orch.started", units=6, parallelism=2), *run.unit_events("config")])
    before_gap = run.seq
    stream = f"**/api/history/runs/{run.run_id}/stream*"

    def behind(route: Route) -> None:
        # While the page was away: the models unit ran; the stream skipped it.
        run.send(run.unit_events("models"))
        newest = run.emit("unit.queued", "storage", tasks=2)
        (event,) = site.get_json(f"/api/history/runs/{run.run_id}/events", after=newest - 1)[
            "events"
        ]
        gap = {"after": before_gap, "next": newest}
        body = (
            "retry: 500\n\n"
            f"event: catchup\ndata: {json.dumps(gap)}\n\n"
            f"id: {newest}\nevent: event\ndata: {json.dumps(event)}\n\n"
        )
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page.route(stream, behind, times=1)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"/#/history?repo={quote(run.repo)}&run={run.run_id}")
    models = page.locator("g.node[data-unit='models']")
    # Only the gap's events say the models unit completed both its tasks.
    expect(models).to_have_attribute("data-status", "completed")
    expect(models.locator(".node-progress")).to_have_text("2/2")
    expect(page.locator("g.node[data-unit='storage']")).to_have_attribute("data-status", "queued")
    # The gap, as the catch-up asks for it (the timeline asks for rows in smaller blocks).
    gap_pages = [u for u in requested if f"/events?after={before_gap}&limit=1000" in u]
    assert gap_pages, requested

    # Live again, from the daemon's own stream (the fake one has ended).
    run.send(run.unit_events("storage"))
    run.complete("completed", completed_units=3)
    expect(page.locator(".run-head .badge")).to_have_text("completed")
    detail = site.get_json(f"/api/history/runs/{run.run_id}")
    expect(page.locator(".tl-count")).to_have_text(f"{detail['event_count']} events")
    expect(page.locator("g.node[data-unit='storage']")).to_have_attribute(
        "data-status", "completed"
    )
