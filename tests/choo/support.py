"""Helpers for the orchestrator's tests (fixtures are in conftest.py): small
plans in git repositories, a scriptable fake agent, ``choo`` subprocesses,
and read-only looks at the history database.

The fake agent is the edge of the world (it stands in for an LLM CLI). It
logs every call to ``agent-log.jsonl`` in its working directory (the
repository root) and obeys ``AGENT:...`` directives written in a task's body:

    AGENT:fail-first          exit 1 on the first attempt, printing FIRST-ATTEMPT-BROKE
    AGENT:fail-always         exit 1 every time
    AGENT:fail-unless=FILE    exit 1 unless FILE exists
    AGENT:write=FILE          create FILE (for a backpressure command to find)
    AGENT:write-second=FILE   create FILE from the second attempt on
    AGENT:sleep=SECONDS       take that long
    AGENT:wait-for=FILE       wait until FILE exists
    AGENT:pidfile=FILE        write its pid to FILE first
    AGENT:secrets             print secret-looking strings amid ordinary text
    AGENT:tool                print one tool call in Claude's stream-json (a Bash call and
                              its result), for a provider whose output is claude-stream
    AGENT:kill-daemon         SIGKILL the daemon whose pid is in $CHOO_HOME/daemon.pid
    AGENT:freeze-daemon       SIGSTOP that daemon (the test sends SIGCONT)
    AGENT:stop-run-unless=FILE  unless FILE exists, SIGTERM its parent (an in-process
                              orchestrator) and wait to be stopped
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from protocol.home import Home

CHOO = Path(sys.executable).with_name("choo")

AGENT_SOURCE = r"""
import json, os, re, signal, sys, time
from pathlib import Path

prompt_file = sys.argv[-1]
with open(prompt_file, encoding="utf-8", newline="") as f:  # a unit name may hold a "\r"
    prompt = f.read()
stdin = sys.stdin.read()
head = prompt.split("\n")[0]
unit = re.search(r"unit `([^`]+)`", head).group(1)
task = int(re.search(r"task (\d+):", head).group(1))
failed = re.search(r"^## Attempt (\d+) failed", prompt, re.M)
attempt = int(failed.group(1)) + 1 if failed else 1
directives = dict(
    (m.group(1), m.group(2)) for m in re.finditer(r"AGENT:([a-z-]+)(?:=(\S+))?", prompt)
)

def log(kind, **extra):
    entry = {"kind": kind, "unit": unit, "task": task, "attempt": attempt, "pid": os.getpid(),
             "time": time.time(), **extra}
    with open("agent-log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")

log("start", argv=sys.argv, prompt=prompt, stdin=stdin, prompt_file=prompt_file,
    prompt_file_existed=os.path.exists(prompt_file))
print(f"ordinary agent chatter for {unit} #{task}", flush=True)
if "pidfile" in directives:
    Path(directives["pidfile"]).write_text(str(os.getpid()))
if "sleep" in directives:
    time.sleep(float(directives["sleep"]))
while "wait-for" in directives and not os.path.exists(directives["wait-for"]):
    time.sleep(0.05)
if "stop-run-unless" in directives and not os.path.exists(directives["stop-run-unless"]):
    os.kill(os.getppid(), signal.SIGTERM)
    time.sleep(30)
if "freeze-daemon" in directives:
    pid = int(Path(os.environ["CHOO_HOME"], "daemon.pid").read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
if "kill-daemon" in directives:
    pid = int(Path(os.environ["CHOO_HOME"], "daemon.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
if "secrets" in directives:
    print("before AKIAIOSFODNN7EXAMPLE after")
    print("curl -H 'Authorization: Bearer abcdef123456789' https://example.invalid")
    print("closing words stay")
if "tool" in directives:
    use = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "make"}}
    done = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}
    print(json.dumps({"type": "assistant", "message": {"id": "msg_1", "content": [use]}}))
    print(json.dumps({"type": "user", "message": {"content": [done]}}), flush=True)
if "write" in directives:
    Path(directives["write"]).write_text("done\n")
if "write-second" in directives and attempt >= 2:
    Path(directives["write-second"]).write_text("done\n")
code = 0
if "fail-first" in directives and attempt == 1:
    print(f"FIRST-ATTEMPT-BROKE in {unit} #{task}")
    code = 1
if "fail-always" in directives:
    print(f"ALWAYS-BROKEN in {unit} #{task}")
    code = 1
if "fail-unless" in directives and not os.path.exists(directives["fail-unless"]):
    print(f"MISSING {directives['fail-unless']}")
    code = 1
log("end", code=code)
sys.exit(code)
"""


def task_md(
    number: int,
    title: str,
    body: str = "",
    *,
    status: str = "pending",
    depends_on: list[int] | None = None,
    backpressure: str | None = None,
) -> str:
    lines = ["---", f"task: {number}", f"status: {status}"]
    if depends_on:
        lines.append(f"depends_on: {json.dumps(depends_on)}")
    # Without a command, say so: a task file must name its validation or `none`.
    lines.append(f"backpressure: {json.dumps(backpressure) if backpressure else 'none'}")
    return "\n".join([*lines, "---", f"# {title}", "", body, ""])


def plan_md(depends_on: list[str] | None = None, provider: str | None = None) -> str:
    meta = []
    if depends_on:
        meta.append(f"depends_on: {json.dumps(depends_on)}")
    if provider:
        meta.append(f"provider: {provider}")
    front = "---\n" + "\n".join(meta) + "\n---\n" if meta else ""
    return front + "# Plan\n\nDo the work.\n"


@dataclass
class Repo:
    """A git repository holding a plan under ``specs/tasks`` and the fake agent."""

    root: Path

    @property
    def tasks_dir(self) -> Path:
        return self.root / "specs" / "tasks"

    def write(self, files: dict[str, str]) -> None:
        for relative, text in files.items():
            path = self.tasks_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="")

    def snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.tasks_dir)): p.read_bytes()
            for p in sorted(self.tasks_dir.rglob("*.md"))
        }

    def status_of(self, relative: str) -> str:
        for line in (self.tasks_dir / relative).read_text().splitlines():
            if line.startswith("status:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"no status line in {relative}")

    def agent_log(self) -> list[dict[str, Any]]:
        path = self.root / "agent-log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def agent_starts(self) -> list[dict[str, Any]]:
        return [e for e in self.agent_log() if e["kind"] == "start"]

    def agent_command(self) -> list[str]:
        return [sys.executable, str(self.root / "agent.py"), "{prompt_file}"]


def make_repo(root: Path, files: dict[str, str], *, config: dict[str, Any] | None = None) -> Repo:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "agent.py").write_text(AGENT_SOURCE, encoding="utf-8")
    repo = Repo(root)
    settings: dict[str, Any] = {
        "provider": {"name": "command", "command": repo.agent_command()},
    }
    settings.update(config or {})
    (root / ".choo.yaml").write_text(json.dumps(settings), encoding="utf-8")  # JSON is YAML
    repo.write(files)
    return repo


# -- choo subprocesses ---------------------------------------------------------


def choo_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def run_choo(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHOO), *args],
        cwd=cwd,
        env=env or choo_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def stop_daemon(home: Home) -> None:
    """Stop the daemon gracefully (it checkpoints the WAL into the database file)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([str(CHOO), "daemon", "stop"], capture_output=True, timeout=30)
    assert not home.socket.exists()


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # not Linux: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(condition: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- the history database, read-only -------------------------------------------


class History:
    """Read-only queries on a CHOO_HOME's history.db (apsw, as the daemon uses)."""

    def __init__(self, home: Home) -> None:
        self.path = home.database

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.set_busy_timeout(5000)
            cursor = conn.cursor()
            cursor.row_trace = lambda c, row: dict(
                zip((d[0] for d in c.getdescription()), row, strict=True)
            )
            return list(cursor.execute(sql, params))
        finally:
            conn.close()

    def runs(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM runs ORDER BY started_at, id")

    def run(self, run_id: str) -> dict[str, Any]:
        (row,) = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return row

    def only_run(self) -> dict[str, Any]:
        runs = self.runs()
        assert len(runs) == 1, runs
        return runs[0]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        for row in rows:
            row["payload"] = json.loads(row["payload"]) if row["payload"] else {}
        return rows

    def count_events(self, type: str) -> int:
        rows = self._query("SELECT count(*) AS n FROM events WHERE type = ?", (type,))
        return int(rows[0]["n"])

    def graph(self, run_id: str) -> dict[str, Any]:
        (row,) = self._query("SELECT * FROM graphs WHERE run_id = ?", (run_id,))
        return {k: json.loads(row[k]) for k in ("nodes", "edges", "levels")}


def assert_contiguous(events: list[dict[str, Any]]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
