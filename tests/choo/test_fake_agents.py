"""The fake agents speak the real formats: examples/fake_agent.py with
--format, and the fake `claude` and `codex` of tests/fixtures/agent-streams/bin
(what the end-to-end tests put on PATH). Their output goes through our
parsers, and the files their prompts ask for get written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from choo.orchestrator.agentstream import AgentResult, ToolCall, make_parser

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "tests" / "fixtures" / "agent-streams" / "bin"
PROMPT = "Settings\n\nCreate `src/settings.py`: the settings module\n"


def parse(fmt: str, stdout: str, model: str | None = None) -> tuple[list[ToolCall], AgentResult]:
    parser = make_parser(fmt, model=model)
    calls = [c for line in stdout.splitlines() for c in parser.feed(line)]
    left, result = parser.finish()
    return calls + left, result


def run(
    argv: list[str], cwd: Path, stdin: str = PROMPT, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    environ.pop("CHOO_FAKE_TRANSCRIPT", None)
    environ.update(env)
    return subprocess.run(
        argv, cwd=cwd, input=stdin, capture_output=True, text=True, env=environ, timeout=60
    )


@pytest.mark.parametrize("fmt", ["claude-stream", "codex-json"])
def test_fake_agent_reports_its_writes_in_the_format(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "prompt.md").write_text(PROMPT)
    agent = ROOT / "examples" / "fake_agent.py"
    done = run([sys.executable, str(agent), "--format", fmt, "prompt.md"], tmp_path)
    assert done.returncode == 0, done.stderr
    calls, result = parse(fmt, done.stdout, model="gpt-5-codex")
    assert (tmp_path / "src" / "settings.py").is_file()
    assert [c.target for c in calls] == (
        ["src/settings.py"] if fmt == "claude-stream" else ["add src/settings.py"]
    )
    assert result.status == "success" and result.unparsed_lines == 0
    assert result.session_id and result.model and result.output_tokens
    assert result.cost_usd is not None and result.cost_estimated is (fmt == "codex-json")


def test_fake_claude_takes_the_real_flags_and_the_prompt_on_stdin(tmp_path: Path) -> None:
    argv = ["claude", "--dangerously-skip-permissions", "-p", "--output-format", "stream-json"]
    done = run([*argv, "--verbose", "--model", "claude-opus-4-5"], tmp_path)
    assert done.returncode == 0, done.stderr
    calls, result = parse("claude-stream", done.stdout)
    assert [c.tool for c in calls] == ["Write"] and result.model == "claude-opus-4-5"
    assert (tmp_path / "src" / "settings.py").is_file()
    assert run(argv, tmp_path).returncode != 0  # stream-json needs --verbose, as for the real one


def test_fake_codex_reads_dash_as_stdin_and_replays_a_transcript(tmp_path: Path) -> None:
    argv = ["codex", "exec", "--json", "--model", "gpt-5-codex", "--sandbox", "workspace-write"]
    done = run(
        [*argv, "--skip-git-repo-check", "-"], tmp_path, CHOO_FAKE_TRANSCRIPT="codex-basic.jsonl"
    )
    assert done.returncode == 0, done.stderr
    calls, result = parse("codex-json", done.stdout, model="gpt-5-codex")
    assert len(calls) == 5 and result.input_tokens == 315
    assert (tmp_path / "src" / "settings.py").is_file()  # the prompt's work is done too


def test_fake_cli_transcript_marker_and_endings(tmp_path: Path) -> None:
    killed = run(
        ["codex", "exec", "--json", "-"], tmp_path, stdin="x\n[transcript: codex-killed.jsonl]\n"
    )
    assert killed.returncode == -9
    assert parse("codex-json", killed.stdout)[1].status is None
    failed = run(
        ["claude", "-p", "--output-format", "stream-json", "--verbose"],
        tmp_path,
        CHOO_FAKE_TRANSCRIPT="claude-max-turns.jsonl",
    )
    assert failed.returncode == 1
    assert parse("claude-stream", failed.stdout)[1].max_turns is True
