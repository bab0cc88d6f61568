"""A run on screen follows its stop and its resume, without a reload.

A real ``choo run`` (with the fake agent of tests/choo/support.py, whose
second unit waits for a marker file) is stopped with SIGINT while the run
is open, then ``choo resume`` finishes it; the open view must show each
state and end with the API's figures.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import CHOO, Site
from tests.choo.support import Repo, make_repo, plan_md, task_md, wait_until


def waiting_plan(root: Path, go: Path) -> Repo:
    """Two units: ``base`` runs at once, ``top`` (after it) waits until ``go`` exists."""
    return make_repo(
        root,
        {
            "base/IMPLEMENTATION_PLAN.md": plan_md(),
            "base/01-start.md": task_md(1, "Start"),
            "top/IMPLEMENTATION_PLAN.md": plan_md(depends_on=["base"]),
            "top/01-wait.md": task_md(1, "Wait", f"AGENT:wait-for={go}"),
        },
    )


def stat(page: Page, label: str) -> Any:
    return page.locator(".run-head .stat", has_text=label).locator(".stat-value")


@pytest.mark.parametrize("tab", ["history", "live"])
def test_the_open_run_follows_its_stop_and_resume(
    page: Page, site: Site, tmp_path: Path, tab: str
) -> None:
    go = tmp_path / "go"
    repo = waiting_plan(tmp_path / "repo", go)
    proc = subprocess.Popen(
        [str(CHOO), "run", "specs/tasks"],
        cwd=repo.root,
        env=site.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: any(s["unit"] == "top" for s in repo.agent_starts()),
            timeout=60,
            what="the agent of unit top to start",
        )
        (run,) = site.get_json("/api/history/runs", repo=str(repo.root.resolve()))["runs"]
        page.goto(f"/#/{tab}?run={run['id']}")
        expect(page.locator(".run-head .badge")).to_have_text("running")
        expect(page.locator("g.node[data-unit='top']")).to_have_attribute("data-status", "running")

        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 130, out
        expect(page.locator(".run-head .badge")).to_have_text("stopped")
        expect(page.locator(".marker-chip.marker-stop")).to_be_visible()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    go.write_text("go\n")
    site.choo("resume", cwd=repo.root, timeout=120)
    detail = site.get_json(f"/api/history/runs/{run['id']}")
    assert detail["status"] == "completed" and detail["resume_count"] == 1

    # No reload: the same page follows the resumed run to its end.
    expect(page.locator(".run-head .badge")).to_have_text("completed")
    expect(stat(page, "resumes")).to_have_text("1")
    expect(stat(page, "events")).to_have_text(f"{detail['event_count']:,}")
    expect(stat(page, "units")).to_contain_text(f"✓ {detail['completed_units']}")
    expect(page.locator(".marker-chip.marker-resume")).to_be_visible()
    expect(page.locator(".tl-count")).to_have_text(f"{detail['event_count']} events")
    expect(page.locator("g.node[data-status='completed']")).to_have_count(2)
    page.get_by_role("button", name="Latest ↓").click()
    expect(page.locator(f".ev[data-seq='{detail['last_seq']}']")).to_be_visible()
