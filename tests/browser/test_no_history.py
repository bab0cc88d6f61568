"""A ``choo run --no-history`` run in the Live tab: shown while it runs, kept nowhere."""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import CHOO, Site
from tests.choo.support import make_repo, plan_md, task_md

# The second unit's validation waits for go.txt, so the run is still running
# while the test looks at it; the test creates the file when it is done.
HOLD = "while [ ! -f go.txt ]; do sleep 0.05; done"
PLAN = {
    "first/IMPLEMENTATION_PLAN.md": plan_md(),
    "first/01-quick.md": task_md(1, "Quick one"),
    "hold/IMPLEMENTATION_PLAN.md": plan_md(["first"]),
    "hold/01-wait.md": task_md(1, "Wait for the test", backpressure=HOLD),
}


def get_json(site: Site, path: str) -> object:
    return site.get_json(path)


def test_a_run_without_history_is_followed_live_then_gone(
    page: Page, site: Site, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "nohist", PLAN)
    root = str(repo.root.resolve())
    page.goto(f"/#/live?repo={quote(root)}")
    expect(page.locator(".live-main .notice h2")).to_have_text("Nothing is running")
    proc = subprocess.Popen(
        [str(CHOO), "run", "--no-history", "specs/tasks"],
        cwd=repo.root,
        env=site.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        card = page.locator(".running-list .run-card")
        expect(card).to_have_count(1, timeout=30_000)
        expect(card.locator(".tag-unrecorded")).to_have_text("not recorded")
        run_id = card.get_attribute("data-run")
        assert run_id is not None
        # Shown in full, as any run that starts with nothing picked.
        expect(page).to_have_url(re.compile(rf"run={run_id}"))
        expect(page.locator(".run-head .tag-unrecorded")).to_have_text("not recorded")
        expect(page.locator(".run-head .badge")).to_have_text("running")
        expect(page.locator("g.node")).to_have_count(2)
        # Its events arrive while it runs: the first unit done, the second held.
        expect(page.locator("g.node[data-unit='first']")).to_have_attribute(
            "data-status", "completed", timeout=30_000
        )
        expect(page.locator("g.node[data-unit='hold']")).to_have_attribute("data-status", "running")
        expect(page.locator(".ev", has_text="task.backpressure").first).to_be_visible()
        expect(card.locator(".rc-last")).to_contain_text("task.backpressure · hold")
        # It is not history.
        query = urllib.parse.urlencode({"repo": root})
        assert get_json(site, f"/api/history/runs?{query}") == {
            "runs": [],
            "next_cursor": None,
            "prev_cursor": None,
            "total": 0,
            "newer": 0,
        }

        (repo.root / "go.txt").write_text("go\n")
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output
        expect(page.locator(".run-head .badge")).to_have_text("completed")
        recent = page.locator(f".recent-list .run-card[data-run='{run_id}']")
        expect(recent.locator(".badge")).to_have_text("completed")
        expect(page.locator(".running-list")).to_contain_text("Nothing running.")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # Over, and forgotten: like any run the daemon does not know.
    with pytest.raises(urllib.error.HTTPError) as gone:
        get_json(site, f"/api/history/runs/{run_id}")
    gone.value.close()
    assert gone.value.code == 404
