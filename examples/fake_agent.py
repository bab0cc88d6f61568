#!/usr/bin/env python3
"""A stand-in for an LLM agent, so the example plan runs anywhere.

choo's `command` provider calls it with the prompt file's path (and the
prompt on stdin). It reads the lines "Create `PATH`: what it is" of the task
and writes those files. A task that says "(flaky)" leaves its work undone on
the first attempt, so that its validation fails and choo retries it with the
failure in the prompt, as it would for a real agent.

With `--format claude-stream` it reports its work the way `claude -p
--output-format stream-json --verbose` does (an init line, its messages, a
Write tool call and result per file, usage, a result line with the cost);
with `--format codex-json` the way `codex exec --json` does. The fake CLIs
of tests/fixtures/agent-streams/bin reuse `run`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from pathlib import Path

MODEL = {"claude-stream": "claude-sonnet-4-5-20250929", "codex-json": "gpt-5-codex"}


def work(prompt: str) -> tuple[str, list[str]]:
    """Do the task: (what to say, the files written)."""
    if "(flaky)" in prompt and "## Attempt 1 failed" not in prompt:
        return "got distracted and wrote nothing this time", []
    written = []
    for path, what in re.findall(r"Create `([^`]+)`: (.+)", prompt):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f'"""{what.strip()}"""\n\nREADY = True\n', encoding="utf-8")
        written.append(path)
    return (f"wrote {', '.join(written)}" if written else "nothing to write"), written


def emit(event: dict[str, object]) -> None:
    print(json.dumps(event, separators=(",", ":")), flush=True)


def claude_stream(
    title: str,
    said: str,
    files: list[str],
    model: str,
    started: float,
    *,
    shell_calls: int = 0,
    api_error: bool = False,
) -> None:
    session = str(uuid.uuid4())
    emit(
        {
            "type": "system",
            "subtype": "init",
            "session_id": session,
            "model": model,
            "cwd": str(Path.cwd()),
            "tools": ["Bash", "Read", "Write"],
            "permissionMode": "bypassPermissions",
        }
    )
    usage = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 1800,
        "cache_read_input_tokens": 9000,
    }
    turns = (
        [("text", f"Working on: {title}")]
        + [("bash", f"echo step {n}") for n in range(shell_calls)]
        + [("write", f) for f in files]
        + [("text", "API Error: 500 Internal server error" if api_error else said)]
    )
    for n, (kind, what) in enumerate(turns):
        message_id = f"msg_{session[:8]}_{n}"
        if kind == "text":
            block: dict[str, object] = {"type": "text", "text": what}
        elif kind == "bash":
            block = {
                "type": "tool_use",
                "id": f"toolu_{n}",
                "name": "Bash",
                "input": {"command": what, "description": "one step"},
            }
        else:
            block = {
                "type": "tool_use",
                "id": f"toolu_{n}",
                "name": "Write",
                "input": {"file_path": what, "content": "READY = True\n"},
            }
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "usage": {**usage, "output_tokens": 40 + 10 * n},
        }
        emit(
            {
                "type": "assistant",
                "message": message,
                "parent_tool_use_id": None,
                "session_id": session,
            }
        )
        if kind != "text":
            result = {
                "type": "tool_result",
                "tool_use_id": f"toolu_{n}",
                "content": f"File created successfully at: {what}" if kind == "write" else what[5:],
            }
            emit(
                {
                    "type": "user",
                    "message": {"role": "user", "content": [result]},
                    "session_id": session,
                }
            )
    out = sum(40 + 10 * n for n in range(len(turns)))
    total = {
        "input_tokens": 3 * len(turns),
        "cache_creation_input_tokens": 1800 * len(turns),
        "cache_read_input_tokens": 9000 * len(turns),
        "output_tokens": out,
    }
    cost = (
        total["input_tokens"] * 3
        + total["cache_creation_input_tokens"] * 3.75
        + total["cache_read_input_tokens"] * 0.3
        + out * 15
    ) / 1e6
    ms = int((time.monotonic() - started) * 1000)
    emit(
        {
            "type": "result",
            "subtype": "success",  # also for an API error: is_error tells (a known trap)
            "is_error": api_error,
            "duration_ms": ms,
            "duration_api_ms": ms,
            "num_turns": len(turns),
            "result": said,
            "session_id": session,
            "total_cost_usd": round(cost, 6),
            "usage": total,
            "permission_denials": [],
            "terminal_reason": "completed",
        }
    )


def codex_json(title: str, said: str, files: list[str], *, shell_calls: int = 0) -> None:
    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    emit({"type": "turn.started"})
    emit(
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "reasoning", "text": f"**{title}**"},
        }
    )
    for n in range(shell_calls):
        item = {
            "id": f"cmd_{n}",
            "type": "command_execution",
            "command": f"bash -lc 'echo step {n}'",
            "aggregated_output": "",
            "exit_code": None,
            "status": "in_progress",
        }
        emit({"type": "item.started", "item": item})
        done = {**item, "aggregated_output": f"step {n}\n", "exit_code": 0, "status": "completed"}
        emit({"type": "item.completed", "item": done})
    for n, path in enumerate(files, start=1):
        change = {"path": path, "kind": "add"}
        emit(
            {
                "type": "item.completed",
                "item": {
                    "id": f"item_{n}",
                    "type": "file_change",
                    "changes": [change],
                    "status": "completed",
                },
            }
        )
    emit(
        {
            "type": "item.completed",
            "item": {"id": "item_last", "type": "agent_message", "text": said},
        }
    )
    usage = {
        "input_tokens": 12000 + 800 * len(files),
        "cached_input_tokens": 9000,
        "output_tokens": 150,
    }
    emit({"type": "turn.completed", "usage": usage})


def run(
    prompt: str,
    fmt: str = "text",
    model: str | None = None,
    *,
    shell_calls: int = 0,
    api_error: bool = False,
) -> int:
    """Do the task in ``prompt`` and report it in format ``fmt``; the exit code.

    ``shell_calls``: that many shell commands reported as tool calls first;
    ``api_error``: the work is done but the agent ends on an API error (as
    Claude Code reports one: ``subtype: success`` with ``is_error: true``).
    """
    started = time.monotonic()
    title = prompt.splitlines()[0] if prompt.strip() else "(no prompt)"
    if fmt == "text":
        print(f"fake agent: {title}", flush=True)
    time.sleep(0.3)  # agents take a while; this lets the live view show progress
    said, files = work(prompt)
    if fmt == "claude-stream":
        claude_stream(
            title,
            said,
            files,
            model or MODEL[fmt],
            started,
            shell_calls=shell_calls,
            api_error=api_error,
        )
        return 1 if api_error else 0
    if fmt == "codex-json":
        codex_json(title, said, files, shell_calls=shell_calls)
    else:
        print(f"fake agent: {said}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt_file", type=Path)
    parser.add_argument("--format", choices=["claude-stream", "codex-json", "text"], default="text")
    parser.add_argument("--model", default=None)
    parser.add_argument("--tools", type=int, default=0, help="shell tool calls to report first")
    args = parser.parse_args()
    prompt = args.prompt_file.read_text(encoding="utf-8")
    return run(prompt, args.format, args.model, shell_calls=args.tools)


if __name__ == "__main__":
    sys.exit(main())
