"""Faults around whole runs: an orchestrator killed outright, a daemon
killed and not restarted (with room to spool, and with a full disk), a
daemon killed again and again under load."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choo import daemonctl, runner
from choo.cli import app
from choo.orchestrator.events import Event
from choo.orchestrator.recorder import HistoryRecorder
from protocol.home import Home, read_pid, read_token
from tests.choo.support import (
    History,
    Repo,
    assert_contiguous,
    choo_env,
    kill_quietly,
    pid_gone,
    plan_md,
    run_choo,
    task_md,
    wait_until,
)
from tests.conftest import Summary


def start_daemon_process(home: Home, *args: str) -> subprocess.Popen[bytes]:
    """A daemon started by hand, with settings `choo daemon start` does not offer."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "choo_daemon", "--home", str(home.root), "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(
        lambda: run_choo("daemon", "status", cwd=home.root).returncode == 0,
        what="the daemon to answer",
    )
    return proc


def test_resume_during_the_grace_period_explains_and_can_take_over(
    repo_factory: Callable[..., Repo],
    home: Home,
    history: History,
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    """A SIGKILLed run, an hour of grace: resume says what the daemon waits for
    and until when; plain resume picks that latest run, not an older stopped
    one; --take-over resumes it at once."""
    daemon = start_daemon_process(home, "--grace-seconds", "3600")
    repo = repo_factory(
        {
            "a/IMPLEMENTATION_PLAN.md": plan_md(),
            "a/01-quick.md": task_md(1, "Quick"),
            "a/02-slow.md": task_md(
                2, "Slow", "AGENT:pidfile=agent.pid AGENT:sleep=60", depends_on=[1]
            ),
        }
    )
    # An older run of this repository that stopped: plain resume must not pick it.
    older = spawn("run", "specs/tasks", cwd=repo.root)
    pidfile = repo.root / "agent.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text() != "", what="the slow agent")
    older.terminate()
    assert older.wait(timeout=60) == 143
    kill_quietly(int(pidfile.read_text()))
    pidfile.unlink()
    [older_id] = [r["id"] for r in history.runs()]

    proc = spawn("run", "specs/tasks", cwd=repo.root)
    wait_until(lambda: pidfile.exists() and pidfile.read_text() != "", what="the slow agent")
    proc.kill()  # SIGKILL: the daemon waits for it to come back
    proc.communicate(timeout=30)
    kill_quietly(int(pidfile.read_text()))
    [run_id] = [r["id"] for r in history.runs() if r["id"] != older_id]
    assert history.run(run_id)["status"] == "running"

    for args in (("resume", run_id), ("resume",)):
        refused = run_choo(*args, cwd=repo.root)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        text = " ".join(refused.stderr.split())
        assert f"run {run_id} is still marked running" in text
        assert "waits for it to come back until 20" in text
        assert f"choo resume {run_id} --take-over" in text
    assert history.run(older_id)["resume_count"] == 0  # not the older one

    repo.write({"a/02-slow.md": task_md(2, "Slow", "now quick", depends_on=[1])})
    taken = run_choo("resume", run_id, "--take-over", cwd=repo.root)
    assert taken.returncode == 0, taken.stderr + taken.stdout
    run = history.run(run_id)
    assert (run["status"], run["resume_count"]) == ("completed", 1)
    events = history.events(run_id)
    assert_contiguous(events)
    kinds = [e["type"] for e in events]
    assert kinds.index("run.stopped") + 1 == kinds.index("run.resumed")
    assert "taken over" in events[kinds.index("run.stopped")]["payload"]["reason"]

    again = run_choo("resume", cwd=repo.root)  # the latest run completed
    assert again.returncode == 1
    assert f"the latest run of {repo.root.resolve()}, {run_id}, completed" in " ".join(
        again.stderr.split()
    )
    daemon.terminate()
    daemon.wait(timeout=60)


def test_a_daemon_frozen_at_the_end_of_a_run_loses_nothing_and_stops_nothing(
    repo_factory: Callable[..., Repo],
    home: Home,
    history: History,
) -> None:
    """SIGSTOP the daemon in the last moments of `choo run`: the run spools
    what was not acked and exits 0; SIGCONT, past the grace period, then a
    new daemon imports the spool. The run holds every event it emitted, and,
    having completed, shows no run.stopped anywhere."""
    daemon = start_daemon_process(home, "--grace-seconds", "1")
    # After the freeze, more history than the socket's buffer holds (each
    # validation keeps 2,000 characters of output): the client's last frame
    # is cut off mid-way when it gives up, spools and exits.
    files = {
        "a/IMPLEMENTATION_PLAN.md": plan_md(),
        "a/01-freeze.md": task_md(1, "Freeze", "AGENT:freeze-daemon"),
    }
    for unit in ("b", "c", "d", "e"):
        files[f"{unit}/IMPLEMENTATION_PLAN.md"] = plan_md(["a"])
        for n in range(1, 31):
            files[f"{unit}/{n:02d}-t.md"] = task_md(n, f"T{n}", backpressure="seq 1 800")
    repo = repo_factory(files)
    env = choo_env(CHOO_DAEMON_AUTO_START="false")  # a user key: not from the repository
    done = run_choo("run", "specs/tasks", cwd=repo.root, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "saved to" in " ".join(done.stdout.split())  # spooled, with one warning
    daemon.send_signal(signal.SIGCONT)
    [run] = history.runs()
    wait_until(
        lambda: history.run(run["id"])["status"] != "running",
        timeout=30,
        what="the thawed daemon to settle the run",
    )
    daemon.terminate()
    daemon.wait(timeout=60)
    again = start_daemon_process(home, "--grace-seconds", "1")
    wait_until(lambda: not any(home.spool.glob("*.frames")), what="the spool import")
    events = history.events(run["id"])
    assert_contiguous(events)
    kinds = [e["type"] for e in events]
    assert "run.stopped" not in kinds
    assert kinds[-1] == "orch.completed"
    assert kinds.count("task.completed") == 121
    assert history.run(run["id"])["status"] == "completed"
    again.terminate()
    again.wait(timeout=60)


def test_an_orchestrator_killed_outright_is_marked_stopped_and_can_resume(
    repo_factory: Callable[..., Repo],
    home: Home,
    history: History,
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    daemon = start_daemon_process(home, "--grace-seconds", "1")
    repo = repo_factory(
        {
            "a/IMPLEMENTATION_PLAN.md": plan_md(),
            "a/01-quick.md": task_md(1, "Quick"),
            "a/02-slow.md": task_md(
                2, "Slow", "AGENT:pidfile=agent.pid AGENT:sleep=60", depends_on=[1]
            ),
        }
    )
    proc = spawn("run", "specs/tasks", cwd=repo.root)
    pidfile = repo.root / "agent.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text() != "", what="the slow agent")
    proc.kill()  # SIGKILL: no chance to record anything
    proc.communicate(timeout=30)
    kill_quietly(int(pidfile.read_text()))

    run_id = history.only_run()["id"]
    wait_until(
        lambda: history.run(run_id)["status"] == "stopped",
        timeout=20,
        what="the daemon to mark the run stopped",
    )
    events = history.events(run_id)
    assert events[-1]["type"] == "run.stopped"
    assert "disconnected without finishing" in events[-1]["payload"]["reason"]

    repo.write({"a/02-slow.md": task_md(2, "Slow", "now quick", depends_on=[1])})
    resumed = run_choo("resume", cwd=repo.root)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    run = history.only_run()
    assert run["status"] == "completed" and run["resume_count"] == 1
    events = history.events(run_id)
    assert_contiguous(events)
    kinds = [e["type"] for e in events]
    assert kinds.count("run.stopped") == 1 and kinds.count("run.resumed") == 1
    assert kinds.index("run.stopped") + 1 == kinds.index("run.resumed")
    # The quick task finished before the kill and is not done again.
    assert [e["task"] for e in events if e["type"] == "task.completed"] == [1, 2]
    daemon.terminate()
    daemon.wait(timeout=30)


def test_a_run_outlives_its_daemon_and_the_next_daemon_imports_the_spool(
    repo_factory: Callable[..., Repo], home: Home, history: History
) -> None:
    assert run_choo("daemon", "start", "--port", "0", cwd=home.root).returncode == 0
    repo = repo_factory(
        {
            "a/IMPLEMENTATION_PLAN.md": plan_md(),
            "a/01-one.md": task_md(1, "One"),
            "a/02-kill.md": task_md(2, "Kill the daemon", "AGENT:kill-daemon", depends_on=[1]),
            "a/03-three.md": task_md(3, "Three", depends_on=[2]),
        }
    )
    env = choo_env(CHOO_DAEMON_AUTO_START="false")  # nobody brings the daemon back
    result = run_choo("run", "specs/tasks", cwd=repo.root, env=env, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.count("warning:") == 1
    assert "spool" in result.stdout
    spooled = list(home.spool.glob("*.frames"))
    assert len(spooled) == 1

    status = run_choo("daemon", "status", cwd=home.root)
    assert status.returncode == 1 and "1 spool file of history waits" in status.stdout

    assert run_choo("daemon", "start", "--port", "0", cwd=home.root).returncode == 0
    wait_until(lambda: not list(home.spool.glob("*.frames")), what="the spool to be imported")
    run = history.only_run()
    assert run["status"] == "completed" and run["completed_units"] == 1
    events = history.events(run["id"])
    assert_contiguous(events)
    assert [e["task"] for e in events if e["type"] == "task.completed"] == [1, 2, 3]
    assert events[-1]["type"] == "orch.completed"
    run_choo("daemon", "stop", cwd=home.root)


@pytest.mark.parametrize(
    ("last_task", "outcome", "code"),
    [("AGENT:sleep=0", "completed", 0), ("AGENT:fail-always", "failed", 1)],
)
def test_a_full_disk_costs_the_unconfirmed_events_but_never_the_run(
    repo_factory: Callable[..., Repo],
    daemon_process: Home,
    full_spool: Path,
    history: History,
    monkeypatch: pytest.MonkeyPatch,
    last_task: str,
    outcome: str,
    code: int,
) -> None:
    repo = repo_factory(
        {
            "u/IMPLEMENTATION_PLAN.md": plan_md(),
            "u/01-kill.md": task_md(1, "Kill the daemon", "AGENT:kill-daemon"),
            "u/02-last.md": task_md(2, "Last", last_task, depends_on=[1]),
        },
        config={"attempts": 1},
    )
    daemon_pid = int(daemon_process.pidfile.read_text().split()[0])
    monkeypatch.setenv("CHOO_DAEMON_AUTO_START", "false")  # nobody restarts it
    monkeypatch.setattr(runner, "COMPLETE_TIMEOUT", 1.0)  # the wait before spooling
    emitted: list[int] = []
    handle = HistoryRecorder.handle

    def counting(recorder: HistoryRecorder, event: Event) -> None:
        handle(recorder, event)
        emitted.append(recorder.last_seq)

    monkeypatch.setattr(HistoryRecorder, "handle", counting)
    monkeypatch.chdir(repo.root)
    result = CliRunner().invoke(app, ["run", "specs/tasks"])
    output = result.output
    assert pid_gone(daemon_pid)
    # The run's own outcome and exit code; no crash.
    assert result.exit_code == code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert f"run {outcome}" in output
    # One warning, with the count of events lost.
    assert output.count("warning") == 1, output
    # (the console wraps long lines wherever the paths in them put the margin)
    flat = " ".join(output.split())
    lost = re.search(r"its last (\d+) events? could not be kept", flat)
    assert lost is not None, output
    assert "No space left on device" in flat
    assert str(full_spool) in output.replace("\n", "")
    # Neither a spool file nor an empty or partial temporary one.
    assert os.listdir(full_spool) == ["filler"]
    # Lost: every event after the last one the dead daemon stored (at most).
    total = emitted[-1]
    stored = max(e["seq"] for e in history.events(history.only_run()["id"]))
    assert total - stored <= int(lost.group(1)) <= total
    print(f"{outcome}: {lost.group(1)} of {total} events lost to a full disk, exit {code}")


def web_of_running_daemon(home: Home) -> str:
    status = run_choo("daemon", "status", "--json", cwd=home.root)
    assert status.returncode == 0, status.stdout + status.stderr
    return str(json.loads(status.stdout)["web"])


def test_after_a_restart_on_another_port_the_history_link_points_at_the_new_daemon(
    repo_factory: Callable[..., Repo], home: Home, history: History
) -> None:
    # daemon.port is 0 (conftest): each daemon start takes a new free port.
    assert run_choo("daemon", "start", cwd=home.root).returncode == 0
    first = web_of_running_daemon(home)
    repo = repo_factory(
        {
            "a/IMPLEMENTATION_PLAN.md": plan_md(),
            "a/01-kill.md": task_md(1, "Kill the daemon", "AGENT:kill-daemon"),
            "a/02-after.md": task_md(2, "After", depends_on=[1]),
        }
    )
    result = run_choo("run", "specs/tasks", cwd=repo.root, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    served = web_of_running_daemon(home)  # the daemon the run started again
    assert served != first, "the new daemon happened to get the old port"
    run = history.only_run()
    assert run["status"] == "completed"
    lines = [line for line in result.stdout.splitlines() if line.startswith("history: ")]
    login = f"{served}/?token={read_token(home)}"
    assert lines == [f"history: {login}#/history?run={run['id']}"], result.stdout
    run_choo("daemon", "stop", cwd=home.root)


def busy_plan(units: int, tasks: int) -> dict[str, str]:
    """Units of chained tasks; the last task of the first unit waits for a
    ``released`` file, so that the run cannot end before the test lets it."""
    files: dict[str, str] = {}
    for u in range(units):
        files[f"u{u}/IMPLEMENTATION_PLAN.md"] = plan_md()
        for t in range(1, tasks + 1):
            gate = " AGENT:wait-for=released" if u == 0 and t == tasks else ""
            files[f"u{u}/{t:02d}-t.md"] = task_md(
                t, f"Task {t}", "AGENT:sleep=0.2" + gate, depends_on=[t - 1] if t > 1 else None
            )
    return files


def test_eight_runs_survive_the_daemon_being_killed_five_times(
    repo_factory: Callable[..., Repo], home: Home, history: History, summary: Summary
) -> None:
    repos = [repo_factory(busy_plan(2, 12), name=f"repo{n}") for n in range(8)]
    procs = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("choo")), "run", "specs/tasks"],
            cwd=r.root,
            env=choo_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for r in repos
    ]
    kills: list[int] = []

    def serving(pid: int) -> bool:
        """The daemon ``pid`` is up, web server too, and a run has connected to
        it (besides the asker); or no run is left to serve."""
        if all(p.poll() is not None for p in procs):
            return True
        status = daemonctl.query_status(home)
        return (
            status is not None
            and status["pid"] == pid
            and bool(status["web"])
            and status["clients"] > 1
        )

    def killer() -> None:
        try:
            while len(kills) < 5 and any(p.poll() is None for p in procs):
                pid = read_pid(home.pidfile)
                if pid is None or pid in kills:
                    time.sleep(0.05)
                    continue
                # Let the new daemon come up and take some traffic first.
                wait_until(lambda pid=pid: serving(pid), timeout=120, what=f"daemon {pid}")
                kill_quietly(pid)
                wait_until(lambda pid=pid: pid_gone(pid), what="the daemon to die")
                kills.append(pid)
        finally:
            for r in repos:  # the runs may end now
                (r.root / "released").touch()

    wait_until(lambda: home.pidfile.exists(), timeout=120, what="a daemon to start")
    thread = threading.Thread(target=killer)
    thread.start()
    outputs = [p.communicate(timeout=240) for p in procs]
    thread.join()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    assert len(kills) == 5, f"the runs ended after only {len(kills)} kills"

    # The last kill may come after the last run needed a daemon: start one,
    # which also imports whatever a run had to spool meanwhile.
    assert run_choo("daemon", "start", "--port", "0", cwd=home.root).returncode == 0
    wait_until(lambda: not list(home.spool.glob("*.frames")), what="the spool to be imported")
    runs = history.runs()
    assert len(runs) == 8
    total = 0
    for run in runs:
        events = history.events(run["id"])
        assert_contiguous(events)  # every event exactly once, seq 1..N
        assert run["status"] == "completed", run
        assert run["event_count"] == run["last_seq"] == len(events)
        assert sum(e["type"] == "task.completed" for e in events) == 24
        total += len(events)
    summary(f"8 runs, {total} events stored exactly once, {len(kills)} daemon kills survived")
    run_choo("daemon", "stop", cwd=home.root)
