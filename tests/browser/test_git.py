"""A run isolated in git worktrees (issue 13), as the UI shows it: the run
branch and whether it landed in the run header, and each attempt's commits
(short SHA, subject, files, lines added and removed) in the task's attempts."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.agents import api
from tests.browser.support import FakeRun, Site, Writer
from tests.web import gitrun
from tests.web.gitrun import Step

UNITS: dict[str, list[str]] = {"api": [], "docs": [], "web": []}


def write(writer: Writer, run_id: str, steps: list[Step], status: str) -> FakeRun:
    run = FakeRun(writer, run_id, "/srv/git-isolated", units=dict(UNITS), tasks=1).start()
    run.send([run.event(kind, unit, task, **payload) for kind, unit, task, payload in steps])
    run.complete(status, completed_units=1, failed_units=1 if status == "failed" else 0)
    return run


def test_the_header_says_the_run_branch_and_that_it_did_not_land(
    page: Page, writer: Writer
) -> None:
    run = write(writer, "run_20260401_120000_git1", gitrun.isolated_run(), "failed")
    page.goto(f"/#/history?run={run.run_id}")
    line = page.locator(".run-git")
    expect(line).to_contain_text(f"branch {gitrun.RUN_BRANCH}")
    expect(line).to_have_attribute("data-landed", "false")
    expect(line.locator(".land-command")).to_have_text(gitrun.LAND_COMMAND)
    expect(line).to_contain_text(f"not landed: {gitrun.LAND_COMMAND}")
    # The command is selected whole by one click, to copy.
    line.locator(".land-command").click()
    assert page.evaluate("() => String(window.getSelection())") == gitrun.LAND_COMMAND


def test_a_landed_run_says_where(page: Page, writer: Writer) -> None:
    steps = [step for step in gitrun.isolated_run() if step[0] != "run.land"]
    landed = {"landed": True, "branch": gitrun.RUN_BRANCH, "into": "main", "sha": "5" * 40}
    steps.append(("run.land", None, None, landed))
    run = write(writer, "run_20260401_121000_git2", steps, "completed")
    page.goto(f"/#/history?run={run.run_id}")
    line = page.locator(".run-git")
    expect(line).to_have_attribute("data-landed", "true")
    expect(line).to_contain_text(f"branch {gitrun.RUN_BRANCH} · landed on main 5555555")
    expect(line.locator(".land-command")).to_have_count(0)


def test_each_attempt_shows_its_commits(page: Page, writer: Writer, site: Site) -> None:
    run = write(writer, "run_20260401_122000_git3", gitrun.isolated_run(), "failed")
    git = api(site, f"/api/history/runs/{run.run_id}/git", unit="api", task=1)
    page.goto(f"/#/history?run={run.run_id}&task=api%3A1")
    dialog = page.locator("dialog.task-dialog")
    first, second = (
        dialog.locator("section.attempt[data-attempt='1']"),
        dialog.locator("section.attempt[data-attempt='2']"),
    )
    expect(second.locator("li.commit")).to_have_count(2)
    expect(first.locator("li.commit")).to_have_count(0)
    expect(first).to_contain_text("No commit.")
    for n, commit in enumerate(git["commits"]):
        li = second.locator("li.commit").nth(n)
        expect(li).to_have_attribute("data-sha", commit["sha"])
        expect(li.locator(".commit-sha")).to_have_text(commit["sha"][:7])
        expect(li.locator(".commit-subject")).to_have_text(commit["subject"])
        expect(li.locator(".commit-stat")).to_have_text(
            f"+{commit['insertions']} −{commit['deletions']}"
        )
        files = li.locator("details.commit-files")
        count = len(commit["files"])
        expect(files.locator("summary")).to_have_text(f"{count} file{'s' if count > 1 else ''}")
        # Collapsed until opened.
        expect(files.locator("li").first).to_be_hidden()
        files.locator("summary").click()
        expect(files.locator("li")).to_have_text(commit["files"])
    agent, choo = second.locator("li.commit").nth(0), second.locator("li.commit").nth(1)
    expect(agent.locator(".commit-author")).to_have_text("agent")
    expect(choo.locator(".commit-author")).to_have_count(0)
    # The subject is text: its markup is shown, not made.
    expect(choo.locator(".commit-subject b")).to_have_count(0)
