"""Make the README's screenshots of the web UI (docs/*.png) from real runs.

    .venv/bin/python -m tests.browser.screenshots [--serve]

Starts a private daemon, runs the example plan with the installed ``choo``
(once to the end, once stopped with SIGINT and resumed, once live while
the Live view is captured), adds a few recorded runs, and saves
docs/history.png, docs/run.png, docs/lanes.png, docs/live.png,
docs/attempts.png, docs/tasks.png, docs/compare.png, docs/search.png and
docs/graph38.png (the 38-unit plan of tests/browser/plan38.py, at 1280 x
900). The recorded runs' agents report tool calls, tokens and cost
(tests/browser/agents.py); ``--serve`` leaves the
daemon running afterwards and prints its URL, to look around by hand.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page, sync_playwright

from tests.browser.agents import Attempt
from tests.browser.agents import unit_events as agent_unit_events
from tests.browser.plan38 import record_plan38
from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EXAMPLES,
    FakeRun,
    Site,
    Writer,
    example_repo,
    log_in,
    new_site,
    remove_site,
    start_example_run,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def runs_of(site: Site, repo: Path) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = site.get_json("/api/history/runs", repo=str(repo))["runs"]
    return runs


READ = ("Read", "src/app/config.py", None, False)
GREP = ("Grep", "def load_settings", None, False)
EDIT = ("Edit", "src/app/config.py", None, False)
TEST = ("Bash", "python3 -m pytest -q tests/test_config.py", 0, False)
TEST_FAIL = ("Bash", "python3 -m pytest -q tests/test_config.py", 1, True)
FAILED = "FAILED tests/test_config.py::test_env_override - KeyError: 'APP_PORT'\n1 failed, 7 passed"


def attempts_of(run: int, unit: int, task: int) -> list[Attempt]:
    """A plausible history: mostly first-try passes; models' task 2 is flaky in run 1."""
    n = run * 7 + unit * 3 + task
    cost = 0.08 + (n % 9) * 0.037
    good = Attempt(
        tools=[*[READ, GREP, EDIT][: 1 + n % 3], TEST],
        input_tokens=18_000 + n * 2311,
        output_tokens=1_400 + n * 97,
        cache_read_tokens=42_000 + n * 1200,
        cost_usd=round(cost, 4),
        agent_ms=21_000 + n * 1700,
        validation_ms=900 + n * 40,
        validation_output="8 passed in 0.41s",
    )
    if (run, unit, task) == (1, 1, 2):
        bad = Attempt(
            passed=False,
            tools=[READ, EDIT, TEST_FAIL],
            cost_usd=0.21,
            agent_ms=34_000,
            validation_ms=1100,
            validation_output=FAILED,
            session_id="4f1c2a9e-sess-1",
        )
        return [bad, good]
    return [good]


def populate(site: Site, repo: Path, writer: Writer) -> str:
    """Past runs of ``repo``; returns the id of the stopped-and-resumed one."""
    base = datetime.now(UTC) - timedelta(days=2)
    for n, (status, done, failed, blocked) in enumerate(
        [("completed", 6, 0, 0), ("failed", 3, 1, 2), ("completed", 6, 0, 0)]
    ):
        run = FakeRun(
            writer,
            f"run_{(base + timedelta(hours=3 * n)):%Y%m%d_%H%M%S}_{n:04x}",
            str(repo),
            started=base + timedelta(hours=3 * n),
            step=timedelta(seconds=2),
            dry_run=n == 2,
        ).start()
        units = ["config", "models", "storage"] if status == "failed" else list(run.units)
        for u, unit in enumerate(units):
            tasks = {
                t: (f"{unit.capitalize()} part {t}", attempts_of(n, u, t))
                for t in range(1, run.tasks + 1)
            }
            run.send(agent_unit_events(run, unit, tasks))
        run.complete(status, completed_units=done, failed_units=failed, blocked_units=blocked)

    # A real run, stopped with SIGINT half-way and resumed with `choo resume`.
    proc = start_example_run(site, repo)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = runs_of(site, repo)
        if runs and runs[0]["status"] == "running" and int(str(runs[0]["event_count"])) > 30:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    site.choo("resume", cwd=repo, timeout=120)
    return str(runs_of(site, repo)[0]["id"])


def wait_searchable(site: Site) -> None:
    """Until the daemon has indexed every event (it indexes behind the writer)."""
    deadline = time.monotonic() + 60
    while site.get_json("/api/history/search", q="x")["unindexed"] and time.monotonic() < deadline:
        time.sleep(0.2)


def shoot(page: Page, name: str, *, until: str | None = None) -> None:
    """Save the window (or down to the bottom of ``until`` and a margin)."""
    page.wait_for_timeout(600)  # transitions settle
    size = page.viewport_size or {"width": 1360, "height": 860}
    height = size["height"]
    if until is not None:
        box = page.locator(until).bounding_box()
        if box is not None:
            height = min(height, int(box["y"] + box["height"] + 20))
    page.screenshot(
        path=str(DOCS / name), clip={"x": 0, "y": 0, "width": size["width"], "height": height}
    )
    print(f"wrote docs/{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep the daemon running")
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    site = new_site()
    repo = example_repo()
    try:
        site.start()
        writer = Writer(site.home)
        try:
            resumed = populate(site, repo, writer)
            plan38 = record_plan38(writer, "run_20260310_091500_p38a", "/srv/shop").run_id
        finally:
            writer.close()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(
                viewport={"width": 1360, "height": 860}, base_url=site.url
            )
            log_in(context, site)
            page = context.new_page()
            page.goto(f"/#/history?repo={quote(str(repo))}")
            page.locator("tr[data-run]").first.wait_for()
            shoot(page, "history.png", until=".pager")

            page.goto(f"/#/history?repo={quote(str(repo))}&run={resumed}")
            page.locator("g.node").first.wait_for()
            page.locator(".marker-chip.marker-stop").click()
            page.locator(".ev.open .ev-line").click()  # the boundary, payload closed
            shoot(page, "run.png")

            page.goto(f"/#/history?repo={quote(str(repo))}&run={resumed}&pane=lanes")
            page.locator("svg.lanes-svg[data-ready]").wait_for()
            shoot(page, "lanes.png", until=".lanes-legend")

            flaky = runs_of(site, repo)[-2]["id"]  # the second recorded run
            page.goto(f"/#/history?repo={quote(str(repo))}&run={flaky}&task=models%3A2")
            page.locator("dialog.task-dialog section.attempt").nth(1).wait_for()
            shoot(page, "attempts.png", until="dialog.task-dialog")

            page.goto(f"/#/tasks?repo={quote(str(repo))}")
            page.locator("tr[data-task]").first.wait_for()
            shoot(page, "tasks.png", until=".tasks-table")

            wide = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)
            log_in(wide, site)
            big = wide.new_page()
            big.goto(f"/#/history?run={plan38}")
            big.locator("g.node[data-status='completed']").nth(35).wait_for()
            shoot(big, "graph38.png")
            wide.close()
            recorded = runs_of(site, repo)[-3:]  # newest first: the dry run, the failed one, ...
            page.goto(f"/#/compare?a={recorded[1]['id']}&b={recorded[0]['id']}")
            page.locator(".compare-graph.side-b g.node").first.wait_for()
            shoot(page, "compare.png")
            wait_searchable(site)
            page.goto(f"/#/search?q=KeyError%20OR%20pytest&repo={quote(str(repo))}")
            page.locator(".search-hit").first.wait_for()
            shoot(page, "search.png", until=".search-list")

            page.goto(f"/#/live?repo={quote(str(repo))}")
            # Fresh task files (the runs above marked them complete), same repository.
            shutil.copytree(EXAMPLES / "specs", repo / "specs", dirs_exist_ok=True)
            proc = start_example_run(site, repo)
            page.locator(".running-list .run-card").first.wait_for(timeout=30_000)
            page.locator("g.node[data-status='running']").first.wait_for(timeout=30_000)
            page.wait_for_timeout(3500)
            shoot(page, "live.png")
            proc.communicate(timeout=120)
            browser.close()
        if args.serve:
            print(f"serving {site.login}  (CHOO_HOME={site.root}); Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        remove_site(site)
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
