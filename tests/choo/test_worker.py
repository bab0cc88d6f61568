"""The worker and providers: prompts, retries with feedback, backpressure, task files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from choo.orchestrator.discovery import Unit, discover
from choo.orchestrator.events import Event, EventBus
from choo.orchestrator.providers import Provider, ProviderError, make_provider
from choo.orchestrator.worker import Worker, WorkerSettings
from tests.choo.support import Repo, make_repo, plan_md, task_md


class Run:
    """One unit of ``repo`` done by a Worker, with the events it emitted."""

    def __init__(self, repo: Repo, provider: Provider | None = None, **settings: Any) -> None:
        self.repo = repo
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        provider = provider or make_provider("command", repo.agent_command(), cwd=repo.root)
        config = WorkerSettings(provider=provider, repo_root=repo.root, **settings)
        self.worker = Worker(bus, config)

    def unit(self, name: str = "u") -> Unit:
        return discover(self.repo.tasks_dir).units[name]

    async def __call__(self, name: str = "u") -> bool:
        return await self.worker.run_unit(self.unit(name))

    def of(self, type: str) -> list[Event]:
        return [e for e in self.events if e.type == type]


def one_unit(tmp_path: Path, *tasks: str) -> Repo:
    files = {"u/IMPLEMENTATION_PLAN.md": plan_md()}
    for n, text in enumerate(tasks, 1):
        files[f"u/{n:02d}-task.md"] = text
    return make_repo(tmp_path / "repo", files)


async def test_a_failed_attempt_is_retried_with_its_output_in_the_next_prompt(
    tmp_path: Path,
) -> None:
    repo = one_unit(tmp_path, task_md(1, "Flaky", "Do it. AGENT:fail-first"))
    run = Run(repo)
    assert await run()
    prompts = [e["prompt"] for e in repo.agent_starts()]
    assert len(prompts) == 2
    assert "FIRST-ATTEMPT-BROKE" not in prompts[0]
    assert "## Attempt" not in prompts[0]
    assert "## Attempt 1 failed" in prompts[1]
    assert "FIRST-ATTEMPT-BROKE in u #1" in prompts[1]
    (retry,) = run.of("task.retry")
    assert retry.payload == {
        "attempt": 1,
        "next_attempt": 2,
        "reason": "agent exited with code 1",
        "stop_reason": "agent_failed",
    }
    (done,) = run.of("task.completed")
    assert done.payload["attempts"] == 2
    assert (done.payload["stop_reason"], done.payload["flaky"]) == ("passed_after_retry", False)
    assert repo.status_of("u/01-task.md") == "complete"


async def test_backpressure_runs_in_the_repo_root_and_its_failure_feeds_the_retry(
    tmp_path: Path,
) -> None:
    check = "echo VALIDATION-SAYS-NO in $(pwd) && test -f made.txt"
    repo = one_unit(
        tmp_path, task_md(1, "Make it", "AGENT:write-second=made.txt", backpressure=check)
    )
    run = Run(repo)
    assert await run()
    prompts = [e["prompt"] for e in repo.agent_starts()]
    assert len(prompts) == 2
    assert f"VALIDATION-SAYS-NO in {repo.root}" in prompts[1]
    assert [e.payload["attempt"] for e in run.of("task.backpressure")] == [1, 2]
    (fail,) = run.of("task.validation.fail")
    assert fail.payload["exit_code"] == 1
    assert fail.payload["command"] == check
    assert f"VALIDATION-SAYS-NO in {repo.root}" in fail.payload["output_tail"]
    assert fail.error == f"validation `{check}` exited with code 1"
    (ok,) = run.of("task.validation.ok")
    assert ok.payload["attempt"] == 2
    assert ok.payload["exit_code"] == 0


async def test_three_attempts_by_default_then_the_task_and_its_unit_fail(
    tmp_path: Path,
) -> None:
    repo = one_unit(
        tmp_path,
        task_md(1, "Hopeless", "AGENT:fail-always"),
        task_md(2, "Never reached", depends_on=[1]),
    )
    run = Run(repo)
    assert not await run()
    assert [(e["task"], e["attempt"]) for e in repo.agent_starts()] == [(1, 1), (1, 2), (1, 3)]
    assert len(run.of("task.retry")) == 2
    (failed,) = run.of("task.failed")
    assert failed.payload["attempts"] == 3
    assert failed.payload["reason"] == "agent exited with code 1"
    (unit_failed,) = run.of("unit.failed")
    assert unit_failed.payload["failed_task"] == 1
    assert not run.of("unit.completed")
    assert [e.task for e in run.of("task.started")] == [1]
    assert repo.status_of("u/01-task.md") == "failed"
    assert repo.status_of("u/02-task.md") == "pending"


async def test_attempts_setting_is_honoured(tmp_path: Path) -> None:
    repo = one_unit(tmp_path, task_md(1, "Hopeless", "AGENT:fail-always"))
    assert not await Run(repo, attempts=1)()
    assert len(repo.agent_starts()) == 1


async def test_provider_timeout(tmp_path: Path) -> None:
    repo = one_unit(tmp_path, task_md(1, "Slow", "AGENT:sleep=5"))
    run = Run(repo, attempts=1, provider_timeout=0.3)
    assert not await run()
    (done,) = run.of("task.claude.done")
    assert done.payload["timed_out"] is True
    assert done.payload["exit_code"] is None
    assert run.of("task.failed")[0].payload["reason"] == "agent timed out after 0.3 s"


async def test_backpressure_timeout(tmp_path: Path) -> None:
    repo = one_unit(tmp_path, task_md(1, "Slow check", backpressure="sleep 5"))
    run = Run(repo, attempts=1, backpressure_timeout=0.3)
    assert not await run()
    (fail,) = run.of("task.validation.fail")
    assert fail.payload["timed_out"] is True
    assert fail.error == "validation timed out after 0.3 s"


async def test_tasks_run_in_task_dependency_order(tmp_path: Path) -> None:
    repo = one_unit(
        tmp_path,
        task_md(1, "Last", depends_on=[3]),
        task_md(2, "First"),
        task_md(3, "Middle", depends_on=[2]),
    )
    run = Run(repo)
    assert await run()
    assert [e["task"] for e in repo.agent_starts()] == [2, 3, 1]
    assert [e.task for e in run.of("task.completed")] == [2, 3, 1]


async def test_completed_tasks_are_skipped(tmp_path: Path) -> None:
    repo = one_unit(tmp_path, task_md(1, "Done before", status="complete"), task_md(2, "To do"))
    run = Run(repo)
    assert await run()
    assert [e["task"] for e in repo.agent_starts()] == [2]
    (started,) = run.of("unit.started")
    assert started.payload == {"tasks": 2, "pending": 1, "provider": "command"}


async def test_success_changes_only_the_status_in_the_task_file(tmp_path: Path) -> None:
    original = (
        "---\r\n"
        "# a comment the user wrote\r\n"
        "task: 1\r\n"
        "title_hint: 'kept as is'   # trailing comment\r\n"
        'status: "pending"\r\n'
        "extra: [1, 2,   3]\r\n"
        "backpressure: none\r\n"
        "---\r\n"
        "# Careful\r\n"
        "\r\n"
        "Body text, with trailing spaces   \r\n"
        "no newline at the end"
    )
    repo = one_unit(tmp_path, original)
    assert await Run(repo)()
    after = (repo.tasks_dir / "u/01-task.md").read_bytes()
    assert after == original.replace('"pending"', '"complete"').encode()


async def test_command_provider_gets_the_prompt_on_stdin_and_as_a_file(tmp_path: Path) -> None:
    repo = one_unit(tmp_path, task_md(1, "Read me", "The body of the task."))
    run = Run(repo)
    assert await run()
    (call,) = repo.agent_starts()
    assert call["stdin"] == call["prompt"]
    assert call["prompt_file_existed"]
    assert call["argv"][-1] == call["prompt_file"]
    assert not await trio.Path(call["prompt_file"]).exists(), "the prompt file is removed"
    prompt = call["prompt"]
    assert prompt.startswith("You are working on unit `u`, task 1: Read me\n")
    assert "The body of the task." in prompt
    assert "Do the work." in prompt, "the unit's plan is part of the prompt"
    (invoke,) = run.of("task.claude.invoke")
    assert invoke.payload["program"] == sys.executable
    assert invoke.payload["prompt_chars"] == len(prompt)


FAKE_CLI = """#!{python}
import json, sys
with open("cli-log.jsonl", "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "stdin": sys.stdin.read()}}) + "\\n")
print("fake {name} did it")
"""


@pytest.mark.parametrize(
    ("name", "model", "expected"),
    [
        (
            "claude",
            None,
            ["-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"],
        ),
        (
            "claude",
            "claude-sonnet-4-5",
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--dangerously-skip-permissions",
                "--model",
                "claude-sonnet-4-5",
            ],
        ),
        ("codex", None, ["exec", "--json", "--sandbox", "workspace-write", "-"]),
        (
            "codex",
            "gpt-5-codex",
            ["exec", "--json", "--sandbox", "workspace-write", "--model", "gpt-5-codex", "-"],
        ),
    ],
)
async def test_claude_and_codex_get_the_prompt_on_stdin_even_past_the_argument_limit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    model: str | None,
    expected: list[str],
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / name
    program.write_text(FAKE_CLI.format(python=sys.executable, name=name))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    big = "word " * 40_000  # 200 KB: over the 128 KiB one argument may hold
    repo = one_unit(tmp_path, task_md(1, "Via a CLI", "Use the real CLI.\n" + big))
    run = Run(repo, provider=make_provider(name, None, cwd=repo.root, model=model))
    assert await run()
    (call,) = [json.loads(line) for line in (repo.root / "cli-log.jsonl").read_text().splitlines()]
    assert call["argv"][1:] == expected
    assert call["stdin"].startswith("You are working on unit `u`, task 1: Via a CLI")
    assert len(call["stdin"]) > 128 * 1024
    (done,) = run.of("task.claude.done")
    assert done.payload["provider"] == name
    (result,) = run.of("task.agent.result")
    assert result.payload["provider"] == name
    assert result.payload["model"] == model
    assert repo.status_of("u/01-task.md") == "complete"


@pytest.mark.parametrize("name", ["claude", "codex"])
def test_a_missing_cli_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProviderError, match=f"needs the program '{name}', which is not on PATH"):
        make_provider(name, None, cwd=tmp_path)


def test_command_provider_problems_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"provider\.command"):
        make_provider("command", None, cwd=tmp_path)
    with pytest.raises(ProviderError, match="'no-such-agent-xyz', which is not on PATH"):
        make_provider("command", ["no-such-agent-xyz", "{prompt}"], cwd=tmp_path)
    with pytest.raises(ProviderError, match="unknown provider 'gpt'"):
        make_provider("gpt", None, cwd=tmp_path)
    # A relative program is looked up in the repository root.
    (tmp_path / "agent.sh").write_text("true\n")
    assert make_provider("command", ["./agent.sh"], cwd=tmp_path).argv("p", Path("f")) == [
        "./agent.sh"
    ]


def test_templates_fill_in_the_prompt_and_its_file() -> None:
    provider = Provider("command", ("tool", "--file={prompt_file}", "{prompt}"), stdin=True)
    assert provider.argv("do {this}", Path("/tmp/p.md")) == [
        "tool",
        "--file=/tmp/p.md",
        "do {this}",
    ]
