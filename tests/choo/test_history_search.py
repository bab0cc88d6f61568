"""``choo history search``: the text of events, across runs or within one, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.home import Home
from tests.choo.seed import Ev, Phase, SeedRun, ago, seed
from tests.choo.support import run_choo, wait_until
from tests.choo.test_history_cli import git_repo, ok

HOSTILE = "[bold red]<img src=x onerror=alert(1)>[/]\x1b[31m"


def _events(word: str) -> list[Ev]:
    return [
        ("task.started", "auth", 1, {"title": f"Add {word} handling"}, None),
        ("task.validation.fail", "auth", 1, {"output_tail": f"KeyError {HOSTILE}"}, None),
        ("unit.started", "db", None, None, None),
        ("task.failed", "auth", 1, {"reason": "validation failed"}, "KeyError in parser"),
    ]


def _search(*args: str, cwd: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok(run_choo("history", "search", *args, "--json", cwd=cwd)))
    return found


def test_search_finds_events_in_a_table_and_as_json(daemon_process: Home, tmp_path: Path) -> None:
    repo_a, repo_b = git_repo(tmp_path / "alpha"), git_repo(tmp_path / "beta")
    seed(
        daemon_process,
        SeedRun("run_s1", str(repo_a), phases=[Phase(_events("token"))], started_at=ago(60)),
        SeedRun("run_s2", str(repo_a), phases=[Phase(_events("cookie"))], started_at=ago(30)),
        SeedRun("run_s3", str(repo_b), phases=[Phase(_events("token"))], started_at=ago(10)),
    )
    wait_until(lambda: _search("x", "--all", cwd=repo_a)["unindexed"] == 0, what="the search index")

    found = _search("KeyError", cwd=repo_a)  # the current repository's runs, newest first
    assert [(m["run_id"], m["seq"]) for m in found["matches"]] == [
        ("run_s2", 4), ("run_s2", 2), ("run_s1", 4), ("run_s1", 2),
    ]  # fmt: skip
    every = _search("token", "--all", cwd=repo_a)
    assert {m["run_id"] for m in every["matches"]} == {"run_s1", "run_s3"}
    within = _search("keyerror", "--run", "run_s1", cwd=repo_a)
    assert within["run"] == "run_s1" and within["total"] == 2
    assert [m["seq"] for m in within["matches"]] == [2, 4]
    limited = _search("KeyError", "--limit", "1", cwd=repo_a)
    assert len(limited["matches"]) == 1 and limited["more"] is True

    table = ok(run_choo("history", "search", "onerror", cwd=repo_a))
    assert "run_s2" in table and "run_s1" in table and "task.validation.fail" in table
    assert "[bold red]<img src=x onerror=alert(1)>[/]" in table  # shown as it is, not markup
    assert "\x1b" not in table  # control characters are made visible
    assert "2 matches" in table

    none = ok(run_choo("history", "search", "nothing-like-this", cwd=repo_a))
    assert "no events of" in none and "0 matches" in none


def test_a_bad_query_is_a_clear_error(daemon_process: Home, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "alpha")
    refused = run_choo("history", "search", '"unclosed', cwd=repo)
    assert refused.returncode == 1
    assert 'a closing " is missing' in refused.stderr
    both = run_choo("history", "search", "x", "--all", "--repo", str(repo), cwd=repo)
    assert both.returncode == 2 and "not both" in both.stderr
