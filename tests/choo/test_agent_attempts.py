"""What each attempt's agent did and why the attempt ended: streamed tool
calls, the result event, stop reasons, agents that cannot start, the
agents' OTEL attributes, a stopped run, and the private prompt folder.

The agent here is a small script (the edge of the world) that prints the
lines its prompt asks for; the parser is a stand-in speaking a tiny line
format, so these tests pin the worker's side of the parser interface
(``feed``, ``finish``, ``text_tail``) whatever the real formats' parsers do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import trio

from choo.orchestrator import agentcall
from choo.orchestrator.agentstream import AgentResult, ToolCall
from choo.orchestrator.events import Event
from choo.orchestrator.promptdir import PREFIX, open_prompt_dir, remove_stale
from choo.orchestrator.providers import Provider, make_provider
from tests.choo.support import (
    CHOO,
    choo_env,
    kill_quietly,
    make_repo,
    pid_gone,
    plan_md,
    task_md,
    wait_until,
)
from tests.choo.test_worker import Run, one_unit

# Prints each "SAY text" line of its prompt (stdin); "WAIT path" waits for a
# file; "ENV" writes its environment to env.json; "EXIT n" exits with n.
AGENT = r"""
import json, os, sys, time
for line in sys.stdin.read().splitlines():
    word, _, rest = line.partition(" ")
    if word == "SAY":
        print(rest, flush=True)
    elif word == "WAIT":
        while not os.path.exists(rest):
            time.sleep(0.02)
    elif word == "ENV":
        with open("env.json", "w") as f:
            json.dump(dict(os.environ), f)
    elif word == "EXIT":
        sys.exit(int(rest))
"""


class LineParser:
    """A stand-in parser: "TOOL name target [exit]" is a call, "OPEN name" a
    call still open at the end, "RESULT {json}" sets the result; the rest is
    what the agent said."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.open: list[ToolCall] = []
        self.result = AgentResult()

    def feed(self, line: str) -> list[ToolCall]:
        word, _, rest = line.partition(" ")
        if word == "TOOL":
            name, target, *code = rest.split()
            self.result.tool_calls += 1
            return [
                ToolCall(
                    name, target, f"id{self.result.tool_calls}", int(code[0]) if code else None
                )
            ]
        if word == "OPEN":
            self.result.tool_calls += 1
            self.open.append(ToolCall(rest, None))
        elif word == "RESULT":
            for key, value in json.loads(rest).items():
                setattr(self.result, key, value)
        elif word == "JUNK":
            self.result.unparsed_lines += 1
        else:
            self.said.append(line)
        return []

    def finish(self) -> tuple[list[ToolCall], AgentResult]:
        return self.open, self.result

    def text_tail(self, chars: int) -> str:
        return "\n".join(self.said)[-chars:]


@pytest.fixture
def line_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agentcall, "make_parser", lambda provider, prices: LineParser())


def agent(repo_root: Path, *template: str) -> Provider:
    (repo_root / "stream_agent.py").write_text(AGENT)
    return make_provider("command", [sys.executable, "stream_agent.py", *template], cwd=repo_root)


def lines(*said: str) -> str:
    return "\n".join(said)


def payloads(run: Run, type: str) -> list[dict[str, Any]]:
    return [e.payload for e in run.of(type)]


async def test_tool_calls_are_emitted_while_the_agent_runs(
    tmp_path: Path, line_parser: None
) -> None:
    body = lines(
        "SAY hello",
        "SAY TOOL Bash ls 0",
        "WAIT seen.txt",  # only once the tool event is out: it is not read after exit
        "SAY TOOL Read src/a.py",
        "SAY OPEN Edit",
        "SAY JUNK",
        'SAY RESULT {"session_id": "s-1", "turns": 3, "input_tokens": 10, "cost_usd": 0.5}',
        "SAY all done",
    )
    repo = one_unit(tmp_path, task_md(1, "Tools", body))
    run = Run(repo, provider=agent(repo.root), provider_timeout=20)

    def on_event(event: Event) -> None:
        if event.type == "task.agent.tool":
            (repo.root / "seen.txt").touch()

    run.worker.bus.subscribe(on_event)
    assert await run()
    tools = run.of("task.agent.tool")
    assert [(e.unit, e.task) for e in tools] == [("u", 1)] * 3
    assert [e.payload for e in tools] == [
        {
            "attempt": 1,
            "tool": "Bash",
            "target": "ls",
            "call_id": "id1",
            "exit_code": 0,
            "is_error": None,
        },
        {
            "attempt": 1,
            "tool": "Read",
            "target": "src/a.py",
            "call_id": "id2",
            "exit_code": None,
            "is_error": None,
        },
        {
            "attempt": 1,
            "tool": "Edit",
            "target": None,
            "call_id": None,
            "exit_code": None,
            "is_error": None,
        },
    ]
    (result,) = payloads(run, "task.agent.result")
    assert result["session_id"] == "s-1"
    assert (result["turns"], result["input_tokens"], result["cost_usd"]) == (3, 10, 0.5)
    assert (result["tool_calls"], result["unparsed_lines"]) == (3, 1)
    (done,) = payloads(run, "task.claude.done")
    assert done["output_tail"] == "hello\nall done"  # what it said, not the raw lines
    types = [e.type for e in run.events]
    assert types.index("task.agent.result") == types.index("task.claude.done") - 1
    assert types.index("task.agent.result") > max(
        i for i, t in enumerate(types) if t == "task.agent.tool"
    )
    assert payloads(run, "task.completed")[0]["stop_reason"] == "passed"


@pytest.mark.parametrize(
    ("said", "exit", "stop_reason", "reason"),
    [
        (
            'RESULT {"is_error": true, "status": "success", "errors": ["API 529"]}',
            0,
            "agent_failed",
            "agent reported an error: API 529",
        ),
        (
            'RESULT {"max_turns": true, "status": "error_max_turns", "is_error": false}',
            0,
            "agent_max_turns",
            "agent stopped at its turn limit (error_max_turns)",
        ),
        ("nothing", 3, "agent_failed", "agent exited with code 3"),
    ],
)
async def test_how_the_agent_ended_is_the_stop_reason(
    tmp_path: Path, line_parser: None, said: str, exit: int, stop_reason: str, reason: str
) -> None:
    repo = one_unit(tmp_path, task_md(1, "Ends", lines(f"SAY {said}", f"EXIT {exit}")))
    run = Run(repo, provider=agent(repo.root), attempts=2)
    assert not await run()
    (retry,) = payloads(run, "task.retry")
    assert (retry["stop_reason"], retry["reason"]) == (stop_reason, reason)
    (failed,) = payloads(run, "task.failed")
    assert (failed["stop_reason"], failed["reason"]) == (stop_reason, reason)


async def test_stop_reasons_of_timeouts_and_validation_and_flaky(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "u/IMPLEMENTATION_PLAN.md": plan_md(),
            "u/01-flaky.md": task_md(
                1, "Flaky", "AGENT:write-second=ok.txt", backpressure="test -f ok.txt"
            ),
            "u/02-agent-flaky.md": task_md(2, "Agent flaky", "AGENT:fail-first", depends_on=[1]),
            "u/03-slow.md": task_md(3, "Slow", "AGENT:sleep=5", depends_on=[2]),
        },
    )
    run = Run(repo, provider_timeout=1.5, attempts=2)
    assert not await run()
    done = {e.task: e.payload for e in run.of("task.completed")}
    assert (done[1]["stop_reason"], done[1]["flaky"]) == ("passed_after_retry", True)
    assert (done[2]["stop_reason"], done[2]["flaky"]) == ("passed_after_retry", False)
    retries = {e.task: e.payload["stop_reason"] for e in run.of("task.retry")}
    assert retries == {1: "validation_failed", 2: "agent_failed", 3: "agent_timeout"}
    assert payloads(run, "task.failed")[0]["stop_reason"] == "agent_timeout"

    repo = one_unit(tmp_path / "b", task_md(1, "Slow check", backpressure="sleep 5"))
    run = Run(repo, attempts=1, backpressure_timeout=0.3)
    assert not await run()
    assert payloads(run, "task.failed")[0]["stop_reason"] == "validation_timeout"
    repo = one_unit(tmp_path / "c", task_md(1, "Quick"))
    run = Run(repo)
    assert await run()
    assert payloads(run, "task.completed")[0] == {
        "title": "Quick",
        "attempts": 1,
        "duration_ms": payloads(run, "task.completed")[0]["duration_ms"],
        "stop_reason": "passed",
        "flaky": False,
    }


async def test_a_prompt_too_long_for_an_argument_fails_the_attempt_not_the_run(
    tmp_path: Path,
) -> None:
    big = "word " * 30_000  # 150 KB
    repo = one_unit(tmp_path, task_md(1, "Huge", big), task_md(2, "Small", depends_on=[1]))
    provider = agent(repo.root, "{prompt}")
    run = Run(repo, provider=provider, attempts=2)
    assert not await run()  # returns: the orchestrator did not crash
    failed = payloads(run, "task.failed")[0]
    assert failed["stop_reason"] == "agent_not_started"
    assert "too long for an argument" in failed["reason"]
    assert "{prompt_file}" in failed["reason"]
    dones = payloads(run, "task.claude.done")
    assert len(dones) == 2 and all(d["exit_code"] is None for d in dones)
    assert "128 KiB" in dones[0]["output_tail"]
    assert not run.of("task.agent.result")  # no agent, no result
    # With {prompt_file} the same prompt goes through.
    repo = one_unit(tmp_path / "b", task_md(1, "Huge", big))
    assert await Run(repo, provider=agent(repo.root, "{prompt_file}"))()


async def test_a_program_gone_after_the_start_fails_the_attempt(tmp_path: Path) -> None:
    repo = one_unit(tmp_path, task_md(1, "Gone"))
    script = repo.root / "vanishing-agent"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    provider = make_provider("command", [str(script)], cwd=repo.root)
    script.unlink()  # checked at the start of the run, gone by the attempt
    run = Run(repo, provider=provider, attempts=1)
    assert not await run()
    (failed,) = payloads(run, "task.failed")
    assert failed["stop_reason"] == "agent_not_started"
    assert failed["reason"] == (
        f"agent not started: could not start `{script}`: no such program "
        "(is it installed and on PATH?)"
    )
    (done,) = payloads(run, "task.claude.done")
    assert done["exit_code"] is None and "could not start" in done["output_tail"]


async def test_agents_get_otel_resource_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=mine,choo.unit=stale,team=a%20b")
    repo = make_repo(
        tmp_path / "repo",
        {
            "my unit,1/IMPLEMENTATION_PLAN.md": plan_md(),
            "my unit,1/01-t.md": task_md(1, "T", "ENV"),
        },
    )
    run = Run(repo, provider=agent(repo.root), run_id="run_20260120_143052_abcd")
    assert await run("my unit,1")
    value = json.loads((repo.root / "env.json").read_text())["OTEL_RESOURCE_ATTRIBUTES"]
    pairs = [pair.split("=") for pair in value.split(",")]
    assert pairs == [
        ["service.name", "mine"],
        ["team", "a%20b"],
        ["choo.run_id", "run_20260120_143052_abcd"],
        ["choo.unit", "my%20unit%2C1"],
        ["choo.task", "1"],
        ["choo.attempt", "1"],
    ]
    assert unquote(pairs[3][1]) == "my unit,1"


def test_otel_attributes_without_any_set_before() -> None:
    env = agentcall.agent_env({"PATH": "/bin"}, {"choo.task": "2"})
    assert env == {"PATH": "/bin", "OTEL_RESOURCE_ATTRIBUTES": "choo.task=2"}


async def test_a_stopped_run_ends_the_attempt_as_cancelled(
    tmp_path: Path, line_parser: None
) -> None:
    body = lines("SAY TOOL Bash make", "SAY OPEN Edit", "SAY working", "WAIT never.txt")
    repo = one_unit(tmp_path, task_md(1, "Stopped", body))
    run = Run(repo, provider=agent(repo.root))
    with trio.move_on_after(10) as scope:
        async with trio.open_nursery() as nursery:

            def on_event(event: Event) -> None:
                if event.type == "task.agent.tool":
                    nursery.cancel_scope.cancel()  # as SIGINT does, through the runner's nursery

            run.worker.bus.subscribe(on_event)
            nursery.start_soon(run)
    assert not scope.cancelled_caught
    types = [e.type for e in run.events]
    assert types[-4:] == ["task.agent.tool", "task.agent.result", "task.claude.done", "task.failed"]
    (failed,) = payloads(run, "task.failed")
    assert failed["stop_reason"] == "cancelled"
    assert failed["reason"] == "the run was stopped during attempt 1"
    assert payloads(run, "task.claude.done")[0]["exit_code"] is None
    assert repo.status_of("u/01-task.md") == "pending"  # a resume does it again


async def test_prompt_files_live_in_a_private_folder_removed_after_the_run(
    tmp_path: Path,
) -> None:
    repo = one_unit(tmp_path, task_md(1, "Private"))
    with open_prompt_dir("run_x", base=tmp_path) as prompts:
        assert prompts.path.stat().st_mode & 0o777 == 0o700
        assert prompts.path.name.startswith(f"{PREFIX}run_x-{os.getpid()}-")
        run = Run(repo, prompts=prompts)
        assert await run()
        (call,) = repo.agent_starts()
        assert Path(call["prompt_file"]).parent == prompts.path
        assert call["prompt_file_existed"]
        assert list(prompts.path.iterdir()) == []  # one attempt's file, gone after it
    assert not prompts.path.exists()


def test_a_killed_runs_prompt_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    repo = one_unit(tmp_path, task_md(1, "Hangs", "AGENT:pidfile=agent.pid AGENT:wait-for=go.txt"))
    env = choo_env(TMPDIR=str(tmp))
    cmd = [str(CHOO), "run", "--no-daemon", str(repo.tasks_dir)]
    first = subprocess.Popen(
        cmd, cwd=repo.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: (repo.root / "agent.pid").exists(), what="the agent to start")
        (left,) = [p for p in tmp.iterdir() if p.name.startswith(PREFIX)]
        assert f"-{first.pid}-" in left.name
        assert [p.name for p in left.iterdir()] == ["u-1-1.md"]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        kill_quietly(first.pid)
        (repo.root / "go.txt").touch()
    agent_pid = int((repo.root / "agent.pid").read_text())
    wait_until(lambda: pid_gone(agent_pid), what="the orphaned agent to end")
    assert left.exists()  # SIGKILL left it behind
    # Another live run's folder is kept; the dead one's goes.
    alive = tmp / f"{PREFIX}run_other-{os.getpid()}-abc"
    alive.mkdir()
    second = subprocess.run(cmd, cwd=repo.root, env=env, capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert not left.exists()
    assert alive.exists()
    assert [p for p in tmp.iterdir() if p.name.startswith(PREFIX)] == [alive]


def test_remove_stale_keeps_what_is_not_a_prompt_folder(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"{PREFIX}run_a-{dead.pid}-xyz").mkdir()
    (tmp_path / f"{PREFIX}not-a-match").mkdir()
    (tmp_path / "other").mkdir()
    removed = remove_stale(tmp_path)
    assert [p.name for p in removed] == [f"{PREFIX}run_a-{dead.pid}-xyz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{PREFIX}not-a-match", "other"]


async def test_a_prompt_file_that_cannot_be_written_fails_the_attempt(tmp_path: Path) -> None:
    repo = one_unit(tmp_path, task_md(1, "No folder"))
    with open_prompt_dir("run_x", base=tmp_path) as prompts:
        prompts.path.rmdir()  # gone under the run (a cleaner, a full disk)
        run = Run(repo, prompts=prompts, attempts=1)
        assert not await run()
    (failed,) = payloads(run, "task.failed")
    assert failed["stop_reason"] == "agent_not_started"
    assert failed["reason"].startswith("agent not started: could not write the prompt file")
    assert repo.agent_starts() == []
