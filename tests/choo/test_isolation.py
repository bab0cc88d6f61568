"""Isolated runs with real git: a worktree per unit, a commit per task,
merges into the run branch, conflicts, landing, resume, a main tree left alone.

The fake agent here (``AGENT``) stands in for an LLM CLI. It reads its
prompt file and obeys directives in the task's body:

    AGENT:write=PATH:TEXT     write TEXT (and a newline) into PATH, in its working folder
    AGENT:mark=DIR            create DIR/<unit> (the test sees it started)
    AGENT:wait-for=FILE       wait until FILE exists
    AGENT:commit              commit its own work (git add -A; git commit)

Given a conflict-resolution prompt, it resolves each listed file by keeping
both sides' lines when ``ISO_RESOLVE=yes`` is in its environment, and does
nothing otherwise. It logs each call to ``$ISO_LOG`` (outside the repository).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from protocol.events import BY_NAME
from protocol.home import Home
from tests.choo.support import History, choo_env, run_choo, wait_until

AGENT = r"""
import json, os, re, subprocess, sys, time
from pathlib import Path

prompt = Path(sys.argv[-1]).read_text(encoding="utf-8")
log = os.environ.get("ISO_LOG")
if log:
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"cwd": os.getcwd(), "head": prompt.splitlines()[0]}) + "\n")
if "stopped on conflicts" in prompt:
    if os.environ.get("ISO_RESOLVE") == "yes":
        for name in re.findall(r"^- (.+)$", prompt, re.M):
            text = Path(name).read_text()
            marks = ("<<<<<<<", "=======", ">>>>>>>")
            kept = [x for x in text.splitlines() if not x.startswith(marks)]
            Path(name).write_text("\n".join(kept) + "\n")
    sys.exit(0)
unit = re.search(r"unit `([^`]+)`", prompt).group(1)
for name, value in re.findall(r"AGENT:([a-z-]+)(?:=(\S+))?", prompt):
    if name == "mark":
        Path(value).mkdir(parents=True, exist_ok=True)
        (Path(value) / unit).write_text("")
    elif name == "wait-for":
        while not os.path.exists(value):
            time.sleep(0.02)
    elif name == "write":
        path, _, text = value.partition(":")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    elif name == "commit":
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", f"agent work in {unit}"], check=True)
"""


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def task(number: int, body: str, backpressure: str = "true") -> str:
    return (
        f"---\ntask: {number}\nstatus: pending\nbackpressure: {json.dumps(backpressure)}\n---\n"
        f"# Step {number}\n\n{body}\n"
    )


def plan(depends_on: list[str] | None = None) -> str:
    front = f"---\ndepends_on: {json.dumps(depends_on)}\n---\n" if depends_on else ""
    return front + "# Plan\n\nDo it.\n"


class GitRepo:
    """A committed repository with a plan under specs/tasks and the fake agent outside it."""

    def __init__(self, root: Path, units: dict[str, tuple[list[str], list[str]]], **config: Any):
        self.root = root
        self.log = root.parent / f"{root.name}-agent.jsonl"
        agent = root.parent / "iso_agent.py"
        agent.write_text(AGENT, encoding="utf-8")
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")
        git(root, "config", "user.email", "dev@example.com")
        git(root, "config", "user.name", "Dev")
        settings = {
            "provider": {
                "name": "command",
                "command": [sys.executable, str(agent), "{prompt_file}"],
            },
            "parallelism": 4,
            **config,
        }
        (root / ".choo.yaml").write_text(json.dumps(settings))
        (root / ".gitignore").write_text("ignored/\n")
        (root / "shared.txt").write_text("one\ntwo\nthree\n")
        for unit, (deps, tasks) in units.items():
            folder = root / "specs" / "tasks" / unit
            folder.mkdir(parents=True)
            (folder / "IMPLEMENTATION_PLAN.md").write_text(plan(deps))
            for n, text in enumerate(tasks, 1):
                (folder / f"0{n}-step.md").write_text(text)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "the plan")
        self.base = git(root, "rev-parse", "HEAD")

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_choo(*args, cwd=self.root, env=choo_env(ISO_LOG=str(self.log), **env))

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``choo`` in the background, its output in one pipe."""
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("choo")), *args],
            cwd=self.root,
            env=choo_env(ISO_LOG=str(self.log)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    def fingerprint(self) -> tuple[str, str, str]:
        """The tracked files' content, ``git status`` and HEAD of the main tree."""
        tracked = git(self.root, "ls-files", "-z").split("\0")
        digest = hashlib.sha256()
        for name in sorted(filter(None, tracked)):
            digest.update(name.encode() + b"\0" + (self.root / name).read_bytes())
        return (
            digest.hexdigest(),
            git(self.root, "status", "--porcelain"),
            git(self.root, "rev-parse", "HEAD"),
        )

    def show(self, ref: str, path: str) -> str:
        return git(self.root, "show", f"{ref}:{path}")

    def branches(self) -> list[str]:
        return git(self.root, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


def run_id_of(output: str) -> str:
    found = re.search(r"run (run_\d{8}_\d{6}_[0-9a-f]{4})", output)
    assert found, output
    return found.group(1)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


# -- four units in parallel ----------------------------------------------------


def test_four_parallel_units_each_in_a_worktree_merge_into_the_run_branch(
    tmp_path: Path, home: Home, history: History
) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    units: dict[str, tuple[list[str], list[str]]] = {
        u: (
            [],
            [
                task(1, f"AGENT:mark={started} AGENT:wait-for={go} AGENT:write=src/{u}.txt:{u}"),
                task(2, f"AGENT:write=src/{u}-2.txt:{u}", backpressure=f"test -f src/{u}-2.txt"),
            ],
        )
        for u in ("a", "b", "c", "d")
    }
    repo = GitRepo(tmp_path / "repo", units)
    before = repo.fingerprint()
    proc = repo.start("run", "specs/tasks")
    try:
        wait_until(
            lambda: started.is_dir() and len(list(started.iterdir())) == 4,
            timeout=60,
            what="four agents at work at once",
        )
        assert repo.fingerprint() == before, "the main tree is untouched while units run"
        go.write_text("")
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert repo.fingerprint() == before, "nor after: the run did not land (git.land is off)"
    run_id = run_id_of(out)
    branch = f"choo/{run_id}"
    assert f"git -C {repo.root} merge {branch}" in out, "the summary says how to take it"

    # Every unit's work is on the run branch, through a merge commit of its own.
    for u in "abcd":
        assert repo.show(branch, f"src/{u}.txt") == u
        assert repo.show(branch, f"src/{u}-2.txt") == u
        assert "status: complete" in repo.show(branch, f"specs/tasks/{u}/01-step.md")
    merges = git(repo.root, "log", "--merges", "--format=%s", branch).splitlines()
    assert sorted(merges) == [f"choo: merge unit {u}" for u in "abcd"]
    # Each task's commit carries its message and trailers.
    subjects = git(repo.root, "log", "--no-merges", "--format=%s", f"{repo.base}..{branch}")
    assert sorted(subjects.splitlines()) == sorted(
        f"{u} #{n}: Step {n}" for u in "abcd" for n in (1, 2)
    )
    trailers = git(
        repo.root,
        "log",
        "--no-merges",
        "--format=%(trailers:key=Choo-Run,valueonly)%(trailers:key=Choo-Attempt,valueonly)",
        f"{repo.base}..{branch}",
    )
    assert trailers.split() == [run_id, "1"] * 8
    # The agents worked in worktrees outside the repository.
    cwds = {json.loads(line)["cwd"] for line in repo.log.read_text().splitlines()}
    assert len(cwds) == 4 and not any(c.startswith(str(repo.root)) for c in cwds)
    assert all(Path(c).is_relative_to(home.root) for c in cwds)
    assert not any(Path(c).exists() for c in cwds), "merged units' worktrees are removed"
    assert set(repo.branches()) >= {"main", branch}

    events = history.events(run_id)
    committed = of_type(events, "task.committed")
    assert len(committed) == 8
    for e in committed:
        p = e["payload"]
        assert p["shas"] and p["files_changed"] >= 1 and p["insertions"] >= 1
        assert p["commits"][0]["author"] == "choo"
        assert git(repo.root, "cat-file", "-t", p["shas"][0]) == "commit"
    assert {e["unit"] for e in of_type(events, "unit.merged")} == set("abcd")
    (branch_event,) = of_type(events, "run.branch")
    assert branch_event["payload"]["base"] == repo.base
    assert branch_event["payload"]["branch"] == branch
    assert branch_event["payload"]["head_branch"] == "main"
    (land,) = of_type(events, "run.land")
    assert land["payload"]["landed"] is False
    for e in of_type(events, "unit.started"):
        assert e["payload"]["branch"] == f"choo/{run_id}-{e['unit']}"
    # Each git event carries every field its catalogue entry allows.
    for kind in ("run.branch", "task.committed", "unit.merged", "unit.started", "run.land"):
        for e in of_type(events, kind):
            assert set(e["payload"]) == BY_NAME[kind].payload, e


def test_a_unit_sees_the_work_of_the_units_it_depends_on(tmp_path: Path, home: Home) -> None:
    repo = GitRepo(
        tmp_path / "repo",
        {
            "first": ([], [task(1, "AGENT:write=made-by-first.txt:hello")]),
            "second": (
                ["first"],
                [task(1, "nothing to do", backpressure="grep -q hello made-by-first.txt")],
            ),
        },
    )
    done = repo.run("run", "specs/tasks", "--land")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "landed" in done.stdout
    # Landed: main fast-forwarded to the run branch, and the files are in the main tree.
    assert (repo.root / "made-by-first.txt").read_text() == "hello\n"
    assert git(repo.root, "rev-parse", "main") == git(
        repo.root, "rev-parse", f"choo/{run_id_of(done.stdout)}"
    )
    assert "status: complete" in (repo.root / "specs/tasks/second/01-step.md").read_text()


# -- conflicts -----------------------------------------------------------------


def conflicting(tmp_path: Path) -> GitRepo:
    return GitRepo(
        tmp_path / "repo",
        {
            "left": ([], [task(1, "AGENT:write=shared.txt:left")]),
            "right": ([], [task(1, "AGENT:write=shared.txt:right")]),
            "after": (["left", "right"], [task(1, "AGENT:write=after.txt:done")]),
        },
    )


def test_a_conflict_the_agent_resolves_merges_after_validation(
    tmp_path: Path, home: Home, history: History
) -> None:
    repo = conflicting(tmp_path)
    done = repo.run("run", "specs/tasks", ISO_RESOLVE="yes")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = run_id_of(done.stdout)
    events = history.events(run_id)
    (conflict,) = of_type(events, "unit.merge.conflict")
    assert conflict["payload"]["files"] == ["shared.txt"]
    assert set(conflict["payload"]) == BY_NAME["unit.merge.conflict"].payload
    loser = conflict["unit"]
    after = [e["type"] for e in events if e["seq"] > conflict["seq"] and e["unit"] == loser]
    assert after.index("task.claude.invoke") < after.index("unit.merged")
    assert "task.validation.ok" in after
    # The resolution is an attempt of the unit's last task, after its retries
    # (3 by default), and its merge commit is recorded as that attempt's.
    (resolved,) = [
        e
        for e in of_type(events, "task.committed")
        if e["unit"] == loser and e["seq"] > conflict["seq"]
    ]
    assert resolved["payload"]["attempt"] == 4
    assert "shared.txt" in resolved["payload"]["files"]
    merged = repo.show(f"choo/{run_id}", "shared.txt").splitlines()
    assert sorted(merged) == ["left", "right"], "both sides kept, no markers"
    assert repo.show(f"choo/{run_id}", "after.txt") == "done"


def test_a_conflict_left_unresolved_fails_the_unit_and_blocks_its_dependents(
    tmp_path: Path, home: Home, history: History
) -> None:
    repo = conflicting(tmp_path)
    done = repo.run("run", "specs/tasks", ISO_RESOLVE="no")
    assert done.returncode == 1, done.stdout + done.stderr
    run_id = run_id_of(done.stdout)
    events = history.events(run_id)
    (conflict,) = of_type(events, "unit.merge.conflict")
    (failed,) = of_type(events, "unit.failed")
    assert failed["unit"] == conflict["unit"]
    assert failed["payload"]["stop_reason"] == "merge_conflict"
    kept = Path(failed["payload"]["worktree"])
    assert kept.is_dir(), "a failed unit's worktree stays for inspection"
    (blocked,) = of_type(events, "unit.blocked")
    assert blocked["unit"] == "after"
    assert "<<<<<<<" not in repo.show(f"choo/{run_id}", "shared.txt"), "the run branch is clean"


# -- stop and resume -----------------------------------------------------------


def resumable(root: Path, gate: Path) -> GitRepo:
    return GitRepo(
        root,
        {
            "one": ([], [task(1, "AGENT:write=one.txt:1"), task(2, "AGENT:write=one-b.txt:1b")]),
            "two": ([], [task(1, f"AGENT:write=two.txt:2 AGENT:wait-for={gate}")]),
            "three": (["one", "two"], [task(1, "AGENT:write=three.txt:3")]),
        },
    )


def test_a_stopped_run_resumes_in_its_worktrees_and_lands_what_an_uninterrupted_one_does(
    tmp_path: Path, home: Home, history: History
) -> None:
    gate = tmp_path / "gate"
    repo = resumable(tmp_path / "repo", gate)
    proc = repo.start("run", "specs/tasks", "--land")
    try:
        wait_until(
            lambda: repo.log.exists() and "unit `two`" in repo.log.read_text(),
            timeout=60,
            what="unit two's agent at work",
        )
        wait_until(
            lambda: home.database.exists() and history.count_events("unit.merged") >= 1,
            timeout=60,
            what="unit one merged",
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    run_id = run_id_of(out)
    two = [json.loads(x)["cwd"] for x in repo.log.read_text().splitlines() if "`two`" in x]
    assert Path(two[0]).is_dir(), "a stopped unit's worktree is kept"

    gate.write_text("")
    resumed = repo.run("resume", run_id, "--land")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = [json.loads(x) for x in repo.log.read_text().splitlines()]
    assert not any("`one`" in x["head"] for x in again[3:]), "unit one is not done again"
    assert [x["cwd"] for x in again if "`two`" in x["head"]][-1] == two[0], "same worktree"
    whole = resumable(tmp_path / "whole", gate)
    assert whole.run("run", "specs/tasks", "--land").returncode == 0
    assert git(repo.root, "rev-parse", "HEAD^{tree}") == git(whole.root, "rev-parse", "HEAD^{tree}")
    assert (repo.root / "three.txt").read_text() == "3\n"


# -- the main tree -------------------------------------------------------------


def test_a_dirty_main_tree_is_listed_and_left_out(tmp_path: Path, home: Home) -> None:
    repo = GitRepo(
        tmp_path / "repo",
        {
            "only": (
                [],
                [task(1, "look", backpressure="grep -qx one shared.txt && test ! -e loose.txt")],
            )
        },
    )
    (repo.root / "shared.txt").write_text("changed by hand\n")
    (repo.root / "loose.txt").write_text("untracked\n")
    (repo.root / "ignored").mkdir()
    (repo.root / "ignored" / "x").write_text("ignored\n")
    done = repo.run("run", "specs/tasks")
    assert done.returncode == 0, done.stdout + done.stderr
    warning = done.stderr + done.stdout
    assert "uncommitted changes" in warning
    assert "shared.txt" in warning and "loose.txt" in warning
    assert "ignored/x" not in warning
    assert (repo.root / "shared.txt").read_text() == "changed by hand\n"


def test_a_plan_with_uncommitted_changes_is_refused(tmp_path: Path, home: Home) -> None:
    repo = GitRepo(tmp_path / "repo", {"only": ([], [task(1, "x")])})
    (repo.root / "specs/tasks/only/02-new.md").write_text(task(2, "new"))
    done = repo.run("run", "specs/tasks", "--no-daemon")
    assert done.returncode == 2
    assert "specs/tasks/only/02-new.md" in done.stderr
    assert "--in-place" in done.stderr


def test_in_place_runs_in_the_main_tree_and_warns_that_units_share_it(
    tmp_path: Path, home: Home
) -> None:
    repo = GitRepo(
        tmp_path / "repo",
        {u: ([], [task(1, f"AGENT:write={u}.txt:{u}")]) for u in ("a", "b")},
    )
    done = repo.run("run", "specs/tasks", "--in-place", "--no-daemon")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "share the working tree" in done.stdout + done.stderr
    assert (repo.root / "a.txt").read_text() == "a\n"
    assert not any(b.startswith("choo/") for b in repo.branches())


def test_setup_teardown_and_baseline_checks(tmp_path: Path, home: Home, history: History) -> None:
    torn = tmp_path / "torn"
    repo = GitRepo(
        tmp_path / "repo",
        {"only": ([], [task(1, "AGENT:write=x.txt:x", backpressure="test -f ignored/setup-ran")])},
        worktree={
            "setup": "mkdir -p ignored && touch ignored/setup-ran",
            "teardown": f"pwd > {torn}",
        },
        baseline_checks=[
            {"name": "has-x", "command": "test -f x.txt"},
            {"name": "never", "command": "exit 3"},
        ],
    )
    done = repo.run("run", "specs/tasks")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = run_id_of(done.stdout)
    events = history.events(run_id)
    assert [e["payload"]["name"] for e in of_type(events, "unit.baseline.ok")] == ["has-x"]
    (fail,) = of_type(events, "unit.baseline.fail")
    assert fail["payload"]["exit_code"] == 3
    assert set(fail["payload"]) == BY_NAME["unit.baseline.fail"].payload
    assert torn.read_text().strip().endswith("/only"), "teardown ran in the unit's worktree"
    assert "ignored" not in git(repo.root, "ls-tree", "-r", "--name-only", f"choo/{run_id}")


def test_commits_the_agent_made_are_kept_and_recorded(
    tmp_path: Path, home: Home, history: History
) -> None:
    repo = GitRepo(tmp_path / "repo", {"only": ([], [task(1, "AGENT:write=y.txt:y AGENT:commit")])})
    done = repo.run("run", "specs/tasks")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = run_id_of(done.stdout)
    (committed,) = of_type(history.events(run_id), "task.committed")
    authors = [c["author"] for c in committed["payload"]["commits"]]
    assert authors == ["agent", "choo"], "the agent's commit, then choo's (the status change)"
    assert committed["payload"]["commits"][0]["subject"] == "agent work in only"
    assert "y.txt" in committed["payload"]["files"]


def test_the_example_plan_runs_isolated_and_lands(tmp_path: Path, home: Home) -> None:
    """What ./scripts/demo does: the examples in a committed repository, with --land."""
    root = tmp_path / "example"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples", root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=d", "-c", "user.email=d@example.com", "commit", "-qm", "plan")
    done = run_choo("run", "specs/tasks", "--land", cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "landed" in done.stdout
    tasks = sorted((root / "specs" / "tasks").rglob("0*.md"))
    assert tasks and all("status: complete" in p.read_text() for p in tasks)
    assert (root / "src" / "app" / "settings.py").is_file()
    assert git(root, "status", "--porcelain") == ""
