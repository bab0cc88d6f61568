#!/usr/bin/env python3
"""Agent stream benchmark: the parse cost per tool call line (issue 12).

Builds a realistic stream for each parser: per tool call, the lines the CLI
writes for it (Claude: an assistant line with the tool_use, a user line with
its tool_result, and every fifth call a text line; Codex: item.started and
item.completed of a command_execution, every fifth call an agent_message),
with the real lines' sizes (a tool result carries some output). Feeds
--calls calls, --repeat times, and prints per tool call: the CPU time to
parse its lines (best and median over the repeats), and the throughput;
then parse + emit: each call also emitted as the worker does
(``task.agent.tool`` on an EventBus with the HistoryRecorder subscribed,
allow-list, redaction, a timestamp, packed as the daemon client packs it,
kept in memory instead of sent). Target: parse + emit <= 20 us per tool
call. scripts/bench/agent_events.py times the same against a real daemon.

Usage: .venv/bin/python scripts/bench/agents.py [--calls 5000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import protocol  # noqa: E402
from choo.orchestrator.agentstream import make_parser  # noqa: E402
from choo.orchestrator.events import EventBus  # noqa: E402
from choo.orchestrator.recorder import HistoryRecorder  # noqa: E402

OUTPUT = "collected 12 items\n\ntests/test_settings.py ............ [100%]\n" * 4


def claude_lines(calls: int) -> list[str]:
    out = [
        json.dumps(
            {"type": "system", "subtype": "init", "session_id": "s", "model": "claude-sonnet-4-5"}
        )
    ]
    usage = {
        "input_tokens": 4,
        "cache_creation_input_tokens": 500,
        "cache_read_input_tokens": 20000,
        "output_tokens": 120,
    }
    for n in range(calls):
        if n % 5 == 0:
            text = {"type": "text", "text": "Now I'll run the tests for the settings module."}
            out.append(
                json.dumps(
                    {
                        "type": "assistant",
                        "message": {
                            "id": f"msg_{n}",
                            "model": "claude-sonnet-4-5",
                            "content": [text],
                            "usage": usage,
                        },
                        "session_id": "s",
                    }
                )
            )
        tool = {
            "type": "tool_use",
            "id": f"toolu_{n}",
            "name": "Bash",
            "input": {
                "command": f"python -m pytest -q tests/test_{n}.py",
                "description": "Run the tests",
            },
        }
        out.append(
            json.dumps(
                {
                    "type": "assistant",
                    "message": {
                        "id": f"msg_{n}",
                        "model": "claude-sonnet-4-5",
                        "content": [tool],
                        "usage": usage,
                    },
                    "parent_tool_use_id": None,
                    "session_id": "s",
                }
            )
        )
        result = {
            "type": "tool_result",
            "tool_use_id": f"toolu_{n}",
            "content": OUTPUT,
            "is_error": n % 7 == 0,
        }
        out.append(
            json.dumps(
                {
                    "type": "user",
                    "message": {"role": "user", "content": [result]},
                    "parent_tool_use_id": None,
                    "session_id": "s",
                }
            )
        )
    out.append(
        json.dumps(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "num_turns": calls,
                "total_cost_usd": 1.5,
                "usage": usage,
                "session_id": "s",
            }
        )
    )
    return out


def codex_lines(calls: int) -> list[str]:
    out = [
        json.dumps({"type": "thread.started", "thread_id": "t"}),
        json.dumps({"type": "turn.started"}),
    ]
    for n in range(calls):
        if n % 5 == 0:
            out.append(
                json.dumps(
                    {
                        "type": "item.completed",
                        "item": {
                            "id": f"m{n}",
                            "type": "agent_message",
                            "text": "Running the tests.",
                        },
                    }
                )
            )
        command = f"bash -lc 'python -m pytest -q tests/test_{n}.py'"
        start = {
            "id": f"item_{n}",
            "type": "command_execution",
            "command": command,
            "aggregated_output": "",
            "exit_code": None,
            "status": "in_progress",
        }
        out.append(json.dumps({"type": "item.started", "item": start}))
        done = {
            **start,
            "aggregated_output": OUTPUT,
            "exit_code": n % 7 and 0,
            "status": "completed",
        }
        out.append(json.dumps({"type": "item.completed", "item": done}))
    out.append(
        json.dumps(
            {
                "type": "turn.completed",
                "usage": {
                    "input_tokens": 10**6,
                    "cached_input_tokens": 9 * 10**5,
                    "output_tokens": 10**4,
                },
            }
        )
    )
    return out


class PackingClient:
    """Stands in for the daemon client: packs each event as ``send_event`` does, keeps it."""

    def __init__(self) -> None:
        self.journal: dict[tuple[str, int], tuple[str, bytes]] = {}

    def send_event(
        self,
        run: str,
        seq: int,
        type: str,
        *,
        time: str,
        unit: str | None = None,
        task: int | None = None,
        pr: int | None = None,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        item = protocol.pack_event_item(seq, time, type, unit, task, pr, payload, error)
        self.journal[(run, seq)] = (run, item)


def measure(fmt: str, lines: list[str], calls: int, repeat: int, *, emit: bool) -> list[float]:
    """CPU seconds per tool call (to parse, and to emit if ``emit``), one figure per repeat."""
    figures = []
    for _ in range(repeat):
        parser = make_parser(fmt, model="gpt-5-codex")
        bus = EventBus()
        if emit:
            recorder = HistoryRecorder(PackingClient(), "run_bench", warn=print)  # type: ignore[arg-type]
            bus.subscribe(recorder.handle)
        start = time.process_time()
        got = 0
        for line in lines:
            for call in parser.feed(line):
                got += 1
                if emit:
                    bus.emit(
                        "task.agent.tool",
                        unit="u",
                        task=1,
                        attempt=1,
                        tool=call.tool,
                        target=call.target,
                        call_id=call.call_id,
                        exit_code=call.exit_code,
                        is_error=call.is_error,
                    )
        parser.finish()
        figures.append((time.process_time() - start) / calls)
        assert got == calls, (fmt, got)
    return figures


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--calls", type=int, default=5000)
    args.add_argument("--repeat", type=int, default=7)
    opts = args.parse_args()
    print(f"{opts.calls} tool calls per stream, {opts.repeat} repeats; CPU time per tool call")
    for fmt, lines in (
        ("claude-stream", claude_lines(opts.calls)),
        ("codex-json", codex_lines(opts.calls)),
    ):
        per_call = measure(fmt, lines, opts.calls, opts.repeat, emit=False)
        size = sum(len(line) + 1 for line in lines) / opts.calls
        best, median = min(per_call) * 1e6, statistics.median(per_call) * 1e6
        print(
            f"  {fmt:13}  {len(lines) / opts.calls:.1f} lines, {size:,.0f} bytes per call:"
            f"  parse {best:.1f} us best, {median:.1f} us median"
            f"  ({1 / statistics.median(per_call):,.0f} calls/s)"
        )
        both = measure(fmt, lines, opts.calls, opts.repeat, emit=True)
        best, median = min(both) * 1e6, statistics.median(both) * 1e6
        print(
            f"  {'':13}  parse + emit per tool call: {best:.1f} us best, {median:.1f} us median"
            f"  target <= 20 us: {'met' if median <= 20 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
