"""``choo history diff A B`` through the installed executable against a real daemon."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from protocol.home import Home
from tests.choo.seed import Ev, Phase, SeedRun, ago, seed, unit_events
from tests.choo.support import run_choo
from tests.daemon.attempts import Script


def mid(passes: bool) -> list[Ev]:
    """Unit "mid", one task: it fails its validation twice, or passes at once."""
    s = Script()
    s.started("mid", 1, "Wire it up")
    if passes:
        s.attempt("mid", 1, 1)
        s.completed("mid", 1, 1)
    else:
        s.attempt("mid", 1, 1, passed=False)
        s.retry("mid", 1, 1, "validation_failed")
        s.attempt("mid", 1, 2, passed=False, cost=0.25)
        s.failed("mid", 1, 2, "validation_failed")
    end: Ev = (
        ("unit.completed", "mid", None, {"tasks": 1, "duration_ms": 2000}, None)
        if passes
        else ("unit.failed", "mid", None, {"reason": "task 1 failed", "duration_ms": 4000}, None)
    )
    return [
        ("unit.started", "mid", None, {"tasks": 1, "pending": 1}, None),
        *((kind, unit, task, payload, None) for kind, unit, task, payload in s.steps),
        end,
    ]


@pytest.fixture
def two_runs(daemon_process: Home, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    before = Phase([*unit_events("base"), *mid(False)], status="failed", units=(1, 1, 0))
    after = Phase(
        [*unit_events("base"), *mid(True), *unit_events("extra")],
        status="completed",
        units=(3, 0, 0),
    )
    seed(
        daemon_process,
        SeedRun(
            "run_d1", str(repo), started_at=ago(seconds=300), phases=[before], units=["base", "mid"]
        ),
        SeedRun(
            "run_d2",
            str(repo),
            started_at=ago(seconds=100),
            phases=[after],
            units=["base", "mid", "extra"],
        ),
    )
    return repo


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_diff_shows_units_and_tasks_side_by_side_with_deltas(two_runs: Path) -> None:
    text = ok(run_choo("history", "diff", "run_d1", "run_d2", cwd=two_runs))
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│")}
    assert "│ failed │ completed │" in lines["status"]
    assert "│ 2 │ 1 │ −1 │" in " ".join(lines["attempts"].split())
    unit_rows = [line for line in text.splitlines() if "│ Δ mid" in line]
    assert len(unit_rows) == 2  # the unit and its task, both marked as changed
    unit_row = unit_rows[0]
    assert "failed → completed" in unit_row
    assert "4.0 s → 2.0 s −2.0 s" in unit_row
    assert "2 → 1 −1" in unit_row
    assert "$0.75 → $0.50 −$0.25" in unit_row
    assert "validation_failed → passed" in unit_row
    assert "passed" in lines["base"] and "Δ" not in lines["base"]  # the same in both
    extra, extra_task = [line for line in text.splitlines() if "Δ extra" in line]
    assert "(only in B)" in extra and "— → completed" in extra
    assert "(only in B)" in extra_task
    assert "2 units and 2 tasks changed" in text
    assert "/#/compare?a=run_d1&b=run_d2" in text

    data = json.loads(ok(run_choo("history", "diff", "run_d1", "run_d2", "--json", cwd=two_runs)))
    assert (data["a"]["id"], data["b"]["id"]) == ("run_d1", "run_d2")
    units = {u["unit"]: u for u in data["units"]}
    assert units["mid"]["attempts"] == {"a": 2, "b": 1, "delta": -1}
    assert units["extra"]["only_in"] == "b"
    assert data["changed"] == {"units": 2, "tasks": 2}


def test_diff_errors_say_what_to_do(two_runs: Path) -> None:
    unknown = run_choo("history", "diff", "run_d1", "run_zz", cwd=two_runs)
    assert unknown.returncode == 1
    assert "b: no run 'run_zz'" in unknown.stderr and "choo history list" in unknown.stderr
    ambiguous = run_choo("history", "diff", "run_d", "run_d2", cwd=two_runs)
    assert ambiguous.returncode == 1 and "a: run id prefix 'run_d' matches" in ambiguous.stderr
    weird = run_choo("history", "diff", "../x", "run_d2", cwd=two_runs)
    assert weird.returncode == 1 and "is not a run ID" in weird.stderr


def test_diff_without_a_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    result = run_choo("history", "diff", "run_a", "run_b", cwd=tmp_path)
    assert result.returncode == 1
    assert "no daemon is running" in result.stderr and "choo daemon start" in result.stderr
