"""``choo history`` through the installed executable against a real daemon:
list, show, events (paged and followed), export/import, prune, run ID prefixes,
and what it says when no daemon runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from protocol.home import Home
from tests.choo.seed import Ev, Phase, SeedRun, ago, seed, simple_run, unit_events
from tests.choo.support import (
    History,
    Repo,
    choo_env,
    plan_md,
    run_choo,
    stop_daemon,
    task_md,
    wait_until,
)
from tests.daemon.attempts import Script


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path.resolve()


@pytest.fixture
def repo_a(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "alpha")


@pytest.fixture
def repo_b(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "beta")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def stop_resume_run(run_id: str, repo: str) -> SeedRun:
    """Three units: a stop half way, a resume, then one fails and blocks another."""
    stopped: Ev = (
        "run.stopped",
        None,
        None,
        {"reason": "SIGINT received", "signal": "SIGINT"},
        None,
    )
    first = Phase([*unit_events("base"), stopped], status="stopped", units=(1, 0, 0))
    blocked: Ev = ("unit.blocked", "top", None, {"blocked_by": "mid", "depends_on": ["mid"]}, None)
    second = Phase(
        [*unit_events("mid", "failed", tasks=2), blocked],
        status="failed",
        units=(1, 1, 1),
        resume_reason="resumed with `choo resume`",
    )
    return SeedRun(run_id, repo, phases=[first, second], units=["base", "mid", "top"])


# -- no daemon ---------------------------------------------------------------------


def test_without_a_daemon_each_command_says_how_to_start_one(repo_a: Path, tmp_path: Path) -> None:
    export = tmp_path / "run.ndjson"
    export.write_text(
        json.dumps(
            {
                "kind": "run",
                "format": 1,
                "id": "run_x",
                "repo_path": "/r",
                "status": "running",
                "started_at": ago(),
                "completed_at": None,
                "parallelism": 1,
                "total_units": 0,
                "completed_units": 0,
                "failed_units": 0,
                "blocked_units": 0,
                "resume_count": 0,
                "dry_run": False,
                "tasks_dir": None,
                "error": None,
                "event_count": 0,
                "last_seq": 0,
            }
        )
        + "\n"
    )
    for args in (
        ["list"],
        ["show", "run_x"],
        ["tasks"],
        ["events", "run_x"],
        ["events", "run_x", "--follow"],
        ["export", "run_x"],
        ["import", str(export)],
        ["prune", "--older-than", "5"],
    ):
        result = run_choo("history", *args, cwd=repo_a)
        assert result.returncode == 1, (args, result.stderr)
        assert "no daemon is running" in result.stderr, args
        assert "start it with `choo daemon start`" in result.stderr, args


# -- list --------------------------------------------------------------------------


@pytest.fixture
def two_repos(daemon_process: Home, repo_a: Path, repo_b: Path) -> Home:
    seed(
        daemon_process,
        simple_run("run_a1", str(repo_a), started_at=ago(seconds=300)),
        simple_run("run_a2", str(repo_a), status="failed", started_at=ago(seconds=200)),
        stop_resume_run("run_a3", str(repo_a)),
        simple_run("run_b1", str(repo_b), dry_run=True, started_at=ago(seconds=100)),
    )
    return daemon_process


def test_list_shows_the_current_repository_in_a_table(two_repos: Home, repo_a: Path) -> None:
    (repo_a / "sub").mkdir()
    text = ok(run_choo("history", "list", cwd=repo_a / "sub"))
    assert f"Runs of {repo_a}" in text
    lines = {line.split()[1]: line for line in text.splitlines() if "run_" in line}
    assert set(lines) == {"run_a1", "run_a2", "run_a3"}
    assert "completed" in lines["run_a1"] and "1/0/0 of 1" in lines["run_a1"]
    assert "failed" in lines["run_a2"] and "0/1/0 of 1" in lines["run_a2"]
    assert "1/1/1 of 3" in lines["run_a3"]
    assert "3 of 3 runs" in text
    assert "choo history list --all" in text
    order = [line.split()[1] for line in text.splitlines() if "run_" in line]
    assert order == ["run_a3", "run_a2", "run_a1"], "newest first"


def test_list_all_repos_or_another_one(two_repos: Home, repo_a: Path, repo_b: Path) -> None:
    every = ok(run_choo("history", "list", "--all", cwd=repo_a))
    assert {"run_a1", "run_a2", "run_a3", "run_b1"} <= set(every.split())
    assert str(repo_b) in every
    other = ok(run_choo("history", "list", "--repo", str(repo_b), cwd=repo_a))
    (row,) = [line for line in other.splitlines() if "run_b1" in line]
    assert "dry run" in row
    assert "run_a1" not in other


def test_list_filters_limits_and_prints_json(two_repos: Home, repo_a: Path) -> None:
    page = json.loads(ok(run_choo("history", "list", "--status", "failed", "--json", cwd=repo_a)))
    assert [r["id"] for r in page["runs"]] == ["run_a3", "run_a2"]
    assert page["total"] == 2
    assert page["repo"] == str(repo_a)

    text = ok(run_choo("history", "list", "--limit", "1", cwd=repo_a))
    assert "1 of 3 runs" in text
    assert "more: choo history list --limit 3" in text

    data = json.loads(ok(run_choo("history", "list", "--limit", "2", "--json", cwd=repo_a)))
    assert [r["id"] for r in data["runs"]] == ["run_a3", "run_a2"]
    assert data["total"] == 3

    bad = run_choo("history", "list", "--status", "done", cwd=repo_a)
    assert bad.returncode == 2
    assert "must be one of running, completed, failed, stopped" in bad.stderr


# -- show --------------------------------------------------------------------------


def test_show_gives_summary_markers_and_each_units_outcome(two_repos: Home, repo_a: Path) -> None:
    text = ok(run_choo("history", "show", "run_a3", cwd=repo_a))
    assert "Run run_a3" in text
    assert "1 completed, 1 failed, 1 blocked of 3" in text
    assert "Stops and resumes" in text
    assert "SIGINT received" in text
    assert "resumed with `choo resume`" in text
    units = {line.split()[1]: line for line in text.splitlines() if line.startswith("│")}
    assert "completed" in units["base"]
    assert "failed" in units["mid"] and "task 2 failed" in units["mid"]
    assert "blocked" in units["top"] and "blocked by mid" in units["top"]

    data = json.loads(ok(run_choo("history", "show", "run_a3", "--json", cwd=repo_a)))
    assert data["run"]["resume_count"] == 1
    assert [(m["type"], m["reason"]) for m in data["run"]["markers"]] == [
        ("run.stopped", "SIGINT received"),
        ("run.resumed", "resumed with `choo resume`"),
    ]
    outcome = {u["unit"]: (u["status"], u["done"], u["tasks"]) for u in data["units"]}
    assert outcome == {
        "base": ("completed", 1, 1),
        "mid": ("failed", 1, 2),
        "top": ("blocked", 0, 1),
    }


def test_an_unknown_run_or_an_ambiguous_prefix_is_a_clear_error(
    two_repos: Home, repo_a: Path
) -> None:
    unknown = run_choo("history", "show", "run_zz", cwd=repo_a)
    assert unknown.returncode == 1
    assert "no run 'run_zz'" in unknown.stderr
    assert "choo history list" in unknown.stderr
    for args in (["show", "run_a"], ["events", "run_a"], ["export", "run_a"]):
        ambiguous = run_choo("history", *args, cwd=repo_a)
        assert ambiguous.returncode == 1, args
        assert "matches several runs" in ambiguous.stderr
        assert "run_a1" in ambiguous.stderr and "run_a3" in ambiguous.stderr
    weird = run_choo("history", "show", "../etc", cwd=repo_a)
    assert weird.returncode == 1
    assert "is not a run ID" in weird.stderr


def test_a_unique_prefix_is_accepted_wherever_a_run_id_is(
    two_repos: Home, repo_a: Path, tmp_path: Path
) -> None:
    shown = json.loads(ok(run_choo("history", "show", "run_b", "--json", cwd=repo_a)))
    assert shown["run"]["id"] == "run_b1"
    events = ndjson(ok(run_choo("history", "events", "run_b", "--json", cwd=repo_a)))
    assert events and events[0]["type"] == "unit.queued"
    followed = ndjson(ok(run_choo("history", "events", "run_b", "-f", "--json", cwd=repo_a)))
    assert followed == events
    exported = ndjson(ok(run_choo("history", "export", "run_b", cwd=repo_a)))
    assert exported[0]["id"] == "run_b1"


# -- events ------------------------------------------------------------------------


def test_events_pages_through_every_event_and_filters(daemon_process: Home, repo_a: Path) -> None:
    many: list[Ev] = [
        ("task.claude.done", f"u{i % 3}", 1, {"attempt": 1, "n": i}, None) for i in range(2500)
    ]
    seed(daemon_process, SeedRun("run_big", str(repo_a), phases=[Phase(many, units=(3, 0, 0))]))

    every = ndjson(ok(run_choo("history", "events", "run_big", "--json", cwd=repo_a)))
    assert [e["seq"] for e in every] == list(range(1, 2501))
    assert every[1234]["payload"] == {"attempt": 1, "n": 1234}

    one_unit = ndjson(
        ok(run_choo("history", "events", "run_big", "--unit", "u1", "--json", cwd=repo_a))
    )
    assert [e["seq"] for e in one_unit] == list(range(2, 2501, 3))

    by_prefix = run_choo("history", "events", "run_big", "--type", "task.", "--json", cwd=repo_a)
    assert len(ndjson(ok(by_prefix))) == 2500
    none = run_choo("history", "events", "run_big", "--type", "unit.", cwd=repo_a)
    assert "0 events matching type unit." in ok(none)

    table = ok(run_choo("history", "events", "run_big", "--unit", "u2", cwd=repo_a))
    lines = [line for line in table.splitlines() if "task.claude.done" in line]
    assert len(lines) == 833
    assert lines[0].split()[0] == "3" and "u2 #1" in lines[0] and "n=2" in lines[0]
    assert "833 events matching unit u2 · run run_big completed" in table


EVENT_LINE = re.compile(r"\s*\d+ \d{4}-\d\d-\d\d ")  # seq, then the date


def runs_so_far(history: History) -> list[dict[str, Any]]:
    try:
        return history.runs()
    except apsw.Error:  # the daemon has not created its database yet
        return []


PLAN = {
    "slow/IMPLEMENTATION_PLAN.md": plan_md(),
    "slow/01-wait.md": task_md(1, "Wait a bit", "AGENT:sleep=3"),
    "next/IMPLEMENTATION_PLAN.md": plan_md(["slow"]),
    "next/01-quick.md": task_md(1, "Quick"),
}


def test_follow_streams_a_running_runs_events_until_it_ends(
    repo_factory: Callable[..., Repo],
    spawn: Callable[..., subprocess.Popen[str]],
    history: History,
    home: Home,
) -> None:
    repo = repo_factory(PLAN)
    runner = spawn("run", "specs/tasks", cwd=repo.root)
    wait_until(lambda: bool(runs_so_far(history)), what="the run to start")
    run_id = history.only_run()["id"]
    before = history.run(run_id)
    assert before["status"] == "running"
    follower = spawn("history", "events", run_id, "--follow", "--json", cwd=repo.root)
    types_only = spawn(
        "history", "events", run_id[:-2], "-f", "--type", "unit.completed", cwd=repo.root
    )
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert runner.wait(timeout=60) == 0
    assert history.run(run_id)["status"] == "completed"
    followed = ndjson(out)
    stored = history.events(run_id)
    assert [(e["seq"], e["type"]) for e in followed] == [(e["seq"], e["type"]) for e in stored]
    assert followed[-1]["type"] == "orch.completed"
    assert followed[-1]["seq"] > before["last_seq"], "events that came after it started"

    text, err = types_only.communicate(timeout=60)
    assert types_only.returncode == 0, err
    rows = [line.split() for line in text.splitlines() if EVENT_LINE.match(line)]
    assert [(row[3], row[4]) for row in rows] == [
        ("unit.completed", "slow"),
        ("unit.completed", "next"),
    ]
    assert f"2 events matching type unit.completed · run {run_id} completed" in text
    stop_daemon(home)


# -- export / import -----------------------------------------------------------------


@pytest.fixture
def other_home() -> Iterator[Home]:
    """A second, empty CHOO_HOME (another machine's history), its daemon stopped after."""
    root = Path(tempfile.mkdtemp(prefix="ch", dir="/tmp"))
    yield Home(root)
    run_choo("daemon", "stop", cwd=root, env=choo_env(CHOO_HOME=str(root)))
    shutil.rmtree(root, ignore_errors=True)


def test_export_then_import_elsewhere_then_export_gives_the_same_file(
    two_repos: Home, repo_a: Path, tmp_path: Path, other_home: Home
) -> None:
    first = tmp_path / "first.ndjson"
    result = run_choo("history", "export", "run_a3", "-o", str(first), cwd=repo_a)
    assert result.returncode == 0, result.stderr
    assert "exported run run_a3 (" in result.stderr
    records = ndjson(first.read_text())
    assert [r["kind"] for r in records[:2]] == ["run", "graph"]
    assert {r["kind"] for r in records[2:]} == {"event"}
    assert records[0]["resume_count"] == 1
    assert len(records) - 2 == records[0]["event_count"]

    env = choo_env(CHOO_HOME=str(other_home.root))
    ok(run_choo("daemon", "start", cwd=repo_a, env=env))
    imported = run_choo("history", "import", str(first), cwd=repo_a, env=env)
    assert "imported run run_a3" in ok(imported)
    second = run_choo("history", "export", "run_a3", cwd=repo_a, env=env)
    assert ok(second) == first.read_text(), "export → import → export is lossless"

    shown = json.loads(ok(run_choo("history", "show", "run_a3", "--json", cwd=repo_a, env=env)))
    assert shown["run"]["resume_count"] == 1
    assert [m["type"] for m in shown["run"]["markers"]] == ["run.stopped", "run.resumed"]


def test_importing_the_same_run_again_changes_nothing_and_other_content_is_refused(
    two_repos: Home, repo_a: Path, tmp_path: Path, history: History
) -> None:
    exported = ok(run_choo("history", "export", "run_a2", cwd=repo_a))
    same = tmp_path / "same.ndjson"
    same.write_text(exported)
    before = (history.runs(), history.events("run_a2"))

    again = run_choo("history", "import", str(same), cwd=repo_a)
    assert "already in the history with the same content" in ok(again)
    data = json.loads(ok(run_choo("history", "import", str(same), "--json", cwd=repo_a)))
    assert data["already_imported"] is True

    records = ndjson(exported)
    records[-1]["payload"] = {"reason": "something else"}
    changed = tmp_path / "changed.ndjson"
    changed.write_text("".join(json.dumps(r) + "\n" for r in records))
    refused = run_choo("history", "import", str(changed), cwd=repo_a)
    assert refused.returncode == 1
    assert "run run_a2 is already in the history with different content" in refused.stderr
    assert f"event {records[-1]['seq']} differs" in refused.stderr
    assert "nothing was imported" in refused.stderr

    records = ndjson(exported)
    records[0]["status"] = "completed"
    changed.write_text("".join(json.dumps(r) + "\n" for r in records))
    refused = run_choo("history", "import", str(changed), cwd=repo_a)
    assert refused.returncode == 1
    assert "status is 'failed' in the history, 'completed' in the file" in refused.stderr
    assert (history.runs(), history.events("run_a2")) == before


def test_a_broken_import_file_is_refused_naming_the_line(
    two_repos: Home, repo_a: Path, tmp_path: Path, history: History
) -> None:
    lines = ok(run_choo("history", "export", "run_a1", cwd=repo_a)).splitlines()
    lines[0] = lines[0].replace("run_a1", "run_new")
    path = tmp_path / "broken.ndjson"
    cases = {
        "line 4: not JSON": [*lines[:3], "{oops", *lines[4:]],
        'line 3: "seq" must be int': [
            *lines[:2],
            lines[2].replace('"seq":1', '"seq":"1"'),
            *lines[3:],
        ],
        "the file is incomplete": lines[:-1],
        'the first line must be the "run" line': lines[1:],
    }
    for expected, content in cases.items():
        path.write_text("\n".join(content) + "\n")
        result = run_choo("history", "import", str(path), cwd=repo_a)
        assert result.returncode == 1, expected
        assert expected in result.stderr, result.stderr
        assert str(path) in result.stderr
    assert "run_new" not in {r["id"] for r in history.runs()}
    missing = run_choo("history", "import", str(tmp_path / "nope.ndjson"), cwd=repo_a)
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


# -- prune -------------------------------------------------------------------------


def test_prune_removes_old_finished_runs_on_demand(
    daemon_process: Home, repo_a: Path, history: History
) -> None:
    old_running = SeedRun(
        "run_old_busy", str(repo_a), started_at=ago(days=200), phases=[Phase([], status=None)]
    )
    seed(
        daemon_process,
        simple_run("run_old", str(repo_a), started_at=ago(days=200)),
        simple_run("run_older", str(repo_a), status="failed", started_at=ago(days=300)),
        simple_run("run_new", str(repo_a), started_at=ago(days=10)),
        old_running,
    )
    all_ids = {"run_old", "run_older", "run_new", "run_old_busy"}

    dry = ok(run_choo("history", "prune", "--older-than", "100", "--dry-run", cwd=repo_a))
    assert "would delete 2 runs (10 events) started more than 100 days ago" in dry
    assert "run_old " in dry and "run_older" in dry
    assert "choo history prune --older-than 100" in dry
    assert {r["id"] for r in history.runs()} == all_ids

    data = json.loads(ok(run_choo("history", "prune", "--older-than", "250", "--json", cwd=repo_a)))
    assert data["dry_run"] is False and data["count"] == 1
    assert [r["id"] for r in data["runs"]] == ["run_older"]
    assert {r["id"] for r in history.runs()} == all_ids - {"run_older"}

    env = choo_env(CHOO_HISTORY_RETENTION_DAYS="100")
    text = ok(run_choo("history", "prune", cwd=repo_a, env=env))
    assert "deleted 1 run (5 events) started more than 100 days ago" in text
    assert {r["id"] for r in history.runs()} == {"run_new", "run_old_busy"}, "running runs stay"

    bad = run_choo("history", "prune", "--older-than", "0", cwd=repo_a)
    assert bad.returncode == 2


# -- roll-ups ------------------------------------------------------------------------


def costly_run(run_id: str, repo: str, *, started_at: str, flaky: bool) -> SeedRun:
    """Unit "api": task 1 passes (after a failed validation when ``flaky``); unit "docs"."""
    script = Script()
    script.started("api", 1, "Add the endpoint")
    if flaky:
        script.attempt("api", 1, 1, tools=3, passed=False)
        script.retry("api", 1, 1, "validation_failed")
        script.attempt("api", 1, 2, tools=1, cost=0.25, estimated=True)
        script.completed("api", 1, 2, flaky=True)
    else:
        script.attempt("api", 1, 1, tools=1)
        script.completed("api", 1, 1)
    script.started("docs", 1, "Write it down")
    script.attempt("docs", 1, 1, tools=0, tokens=(1500, 0, 0, 0), cost=None, validation=None)
    script.completed("docs", 1, 1)
    events: list[Ev] = [
        (kind, unit, task, payload, None) for kind, unit, task, payload in script.steps
    ]
    phase = Phase([*events, *unit_events("api")[-1:]], status="completed", units=(2, 0, 0))
    return SeedRun(run_id, repo, started_at=started_at, phases=[phase], units=["api", "docs"])


@pytest.fixture
def costly(daemon_process: Home, repo_a: Path) -> Home:
    seed(
        daemon_process,
        costly_run("run_c1", str(repo_a), started_at=ago(seconds=300), flaky=False),
        costly_run("run_c2", str(repo_a), started_at=ago(seconds=200), flaky=True),
    )
    return daemon_process


def test_show_prints_totals_and_each_units_roll_up(costly: Home, repo_a: Path) -> None:
    text = ok(run_choo("history", "show", "run_c2", cwd=repo_a))
    assert re.search(r"cost\s+~\$0\.75 \(estimated\)", text), text
    assert re.search(r"tokens\s+1\.7k in, 40 out, 2\.0k cache read, 20 cache write", text), text
    assert re.search(r"agent time\s+3\.0 s", text)
    assert re.search(r"attempts\s+3\b", text) and re.search(r"tool calls\s+4\b", text)
    header = next(line for line in text.splitlines() if "Attempts" in line)
    assert all(word in header for word in ("Tokens", "Cost", "Tools"))
    units = {line.split()[1]: line.split("│") for line in text.splitlines() if line.startswith("│")}
    api = [cell.strip() for cell in units["api"]]
    assert api[7:11] == ["2", "2.3k", "~$0.75", "4"], api
    docs = [cell.strip() for cell in units["docs"]]
    assert docs[7:11] == ["1", "1.5k", "$0.00", "0"], docs
    data = json.loads(ok(run_choo("history", "show", "run_c2", "--json", cwd=repo_a)))
    assert data["run"]["totals"]["attempts"] == 3
    assert data["run"]["totals"]["cost_estimated"] is True
    assert {u["unit"]: u["tool_calls"] for u in data["units"]} == {"api": 4, "docs": 0}


def test_tasks_prints_the_cross_run_table_flaky_first(
    costly: Home, repo_a: Path, repo_b: Path
) -> None:
    text = ok(run_choo("history", "tasks", cwd=repo_a))
    assert f"Tasks of {repo_a} across runs" in " ".join(text.split())  # the title may wrap
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["api", "docs"], "flaky first"
    api = [cell.strip() for cell in rows[0].split("│")]
    assert api[3:7] == ["Add the endpoint", "2", "50%", "1"], api
    assert "2 of 2 tasks" in text
    data = json.loads(ok(run_choo("history", "tasks", "--limit", "1", "--json", cwd=repo_a)))
    assert data["total"] == 2 and [t["unit"] for t in data["tasks"]] == ["api"]
    assert [o["run_id"] for o in data["tasks"][0]["last"]] == ["run_c2", "run_c1"]
    assert data["tasks"][0]["flaky_runs"] == 1
    other = ok(run_choo("history", "tasks", "--repo", str(repo_b), cwd=repo_a))
    assert f"no tasks of {repo_b} in the history" in " ".join(other.split())
