"""``choo history show`` of a run isolated in git worktrees (issue 13): its branch and
whether it landed, the commits of each task, and the worktrees kept, through the
installed executable against a real daemon."""

from __future__ import annotations

import json
import re
from pathlib import Path

from protocol.home import Home
from tests.choo.seed import Ev, Phase, SeedRun, seed, simple_run
from tests.choo.support import run_choo
from tests.choo.test_history_cli import git_repo, ok
from tests.web import gitrun


def test_show_lists_the_branch_the_commits_per_task_and_the_worktrees_kept(
    daemon_process: Home, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo")
    space = tmp_path / "worktrees"
    (space / "run_iso" / "docs").mkdir(parents=True)  # kept; "web"'s is gone (cleaned up)
    events: list[Ev] = [
        (kind, unit, task, payload, None)
        for kind, unit, task, payload in gitrun.isolated_run("run_iso", str(space))
    ]
    phase = Phase(events, status="failed", units=(1, 1, 0))
    seed(
        daemon_process,
        SeedRun("run_iso", str(repo), phases=[phase], units=["api", "docs", "web"]),
        simple_run("run_plain", str(repo)),
    )

    text = ok(run_choo("history", "show", "run_iso", cwd=repo))
    flat = " ".join(text.split())
    assert f"branch {gitrun.RUN_BRANCH} (started from main at bbbbbbb)" in flat
    assert f"landed no (main has moved since the run started): {gitrun.LAND_COMMAND}" in flat
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("Commits"))
    rows = [line.split("│") for line in lines[start:] if line.startswith("│")]
    commits = [[cell.strip() for cell in row[1:-1]] for row in rows[:3]]
    assert commits == [
        ["api", "#1", "2", "1111111", "Add the routes (agent)", "+40 −2"],
        ["api", "#1", "2", "2222222", "api #1: Routes <b>bold</b>", "+25 −7"],
        ["docs", "#1", "1", "3333333", "docs #1: Readme", "+3 −1"],
    ]
    kept = next(n for n, line in enumerate(lines) if line.startswith("Worktrees kept"))
    body = " ".join(lines[kept:])
    assert re.search(r"docs\s*│\s*failed\s*│", body) and re.search(r"web\s*│\s*stopped\s*│", body)
    assert [line.split("│")[-2].strip() for line in lines[kept:] if line.startswith("│")] == [
        "yes",
        "gone",
    ]
    assert str(space / "run_iso" / "docs")[:30] in body  # the path (it may fold)

    data = json.loads(ok(run_choo("history", "show", "run_iso", "--json", cwd=repo)))
    git = data["git"]
    assert git["branch"] == gitrun.RUN_BRANCH and git["land"]["landed"] is False
    assert [(c["unit"], c["task"], c["attempt"]) for c in git["commits"]] == [
        ("api", 1, 2),
        ("api", 1, 2),
        ("docs", 1, 1),
    ]
    assert [k["unit"] for k in git["kept_worktrees"]] == ["docs", "web"]

    # A run that was not isolated says nothing of git.
    plain = ok(run_choo("history", "show", "run_plain", cwd=repo))
    labels = [line.split()[0] for line in plain.splitlines() if line.split()]
    assert "branch" not in labels and "landed" not in labels
    assert "Commits" not in plain and "Worktrees kept" not in plain
    assert (
        json.loads(ok(run_choo("history", "show", "run_plain", "--json", cwd=repo)))["git"][
            "commits"
        ]
        == []
    )
