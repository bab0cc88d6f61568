#!/usr/bin/env python3
"""Agent events benchmark: what a tool call costs the orchestrator, and
whether a busy plan's tool calls are all recorded.

Two parts, each against a real daemon in a temporary CHOO_HOME:

1. Emit cost: ``EventBus.emit("task.agent.tool", ...)`` with the history
   recorder subscribed (payload allow-list, redaction, packing, queueing on
   the client), timed per call; then the stream parser's share too, feeding
   Claude stream-json lines (a tool_use and its tool_result per call)
   through ``agentstream.make_parser``. The issue's target is at most 20 µs
   per tool call to parse and emit: the figure held against it is the
   orchestrator process's CPU time (the client's sending and its acks
   included, the daemon's work not), the best of ``--rounds`` rounds: as
   with ``timeit``, the lowest time is what the code costs, and the higher
   ones are other processes' interference (the median is printed too, and
   the wall time, which on a busy machine counts other processes' turns).
2. A plan of 8 parallel units (4 on a fake ``claude``, 4 on a fake
   ``codex``, from ``tests/fixtures/agent-streams/bin``), each agent
   streaming 5,000 tool calls, run by the installed ``choo``; then every
   ``task.agent.tool`` event is counted through the HTTP API: all 40,000
   must be stored, nothing dropped.

Usage: .venv/bin/python scripts/bench/agent_events.py [--units 8] [--tools 5000] [--emits 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BIN = ROOT / "tests" / "fixtures" / "agent-streams" / "bin"
CHOO = Path(sys.executable).with_name("choo")


def claude_lines(calls: int) -> list[str]:
    """A tool_use line and its tool_result line per call, in Claude's stream-json."""
    out = []
    for n in range(calls):
        command = {"command": f"pytest -q tests/test_{n % 50}.py", "description": "run"}
        use = {"type": "tool_use", "id": f"toolu_{n}", "name": "Bash", "input": command}
        message: dict[str, Any] = {"id": f"msg_{n}", "role": "assistant", "content": [use]}
        message |= {"model": "claude-sonnet-4-5", "usage": {"input_tokens": 3, "output_tokens": 20}}
        out.append(json.dumps({"type": "assistant", "session_id": "s", "message": message}))
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "1 passed"}
        out.append(json.dumps({"type": "user", "message": {"content": [result]}}))
    return out


def emit_cost(emits: int, rounds: int) -> None:
    import trio

    from choo.client import open_daemon_client
    from choo.orchestrator import agentstream
    from choo.orchestrator.events import EventBus
    from choo.orchestrator.recorder import HistoryRecorder
    from protocol.home import Home
    from protocol.times import utc_now

    async def main() -> None:
        async with open_daemon_client(Home.from_env(), name="bench-emit") as client:
            run = f"run_bench_emit_{os.getpid()}"
            await client.start_run(
                run, repo_path="/bench", started_at=utc_now(), parallelism=1, total_units=1
            )
            bus = EventBus()
            recorder = HistoryRecorder(client, run, warn=print)
            bus.subscribe(recorder.handle)
            ids: dict[str, Any] = {"unit": "u", "task": 1, "attempt": 1}

            async def emit_round() -> tuple[float, float]:
                start, cpu = time.perf_counter(), time.process_time()
                for n in range(emits):
                    bus.emit(
                        "task.agent.tool",
                        **ids,
                        tool="Bash",
                        target=f"pytest -q tests/test_{n % 50}.py",
                        call_id=f"toolu_{n}",
                        exit_code=0,
                        is_error=False,
                    )
                    if n % 200 == 0:
                        await trio.lowlevel.checkpoint()  # let the client send, as a run does
                await client.wait_acked(run)  # its acks are the client's work too
                return (time.process_time() - cpu) / emits, (time.perf_counter() - start) / emits

            lines = claude_lines(emits // 2)

            async def parse_round() -> tuple[float, float]:
                parser = agentstream.make_parser("claude-stream")
                start, cpu = time.perf_counter(), time.process_time()
                calls = 0
                for n, line in enumerate(lines):
                    for call in parser.feed(line):
                        calls += 1
                        bus.emit(
                            "task.agent.tool",
                            **ids,
                            tool=call.tool,
                            target=call.target,
                            call_id=call.call_id,
                            exit_code=call.exit_code,
                            is_error=call.is_error,
                        )
                    if n % 400 == 0:
                        await trio.lowlevel.checkpoint()
                await client.wait_acked(run)
                return (time.process_time() - cpu) / calls, (time.perf_counter() - start) / calls

            for name, one_round, count in (
                ("emit + record", emit_round, emits),
                ("parse + emit", parse_round, emits // 2),
            ):
                timed = [await one_round() for _ in range(rounds)]
                cpu_times, wall_times = zip(*timed, strict=True)
                best, middle = min(cpu_times) * 1e6, statistics.median(cpu_times) * 1e6
                verdict = f"; target <= 20 µs: {'met' if best <= 20 else 'NOT met'}"
                print(
                    f"{name} per tool call: {best:.1f} µs CPU best of {rounds} rounds,"
                    f" median {middle:.1f} (wall median {statistics.median(wall_times) * 1e6:.1f};"
                    f" {count} calls a round)" + (verdict if name == "parse + emit" else "")
                )

    trio.run(main)


def make_plan(root: Path, units: int) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for n in range(units):
        unit = root / "specs" / "tasks" / f"unit{n}"
        unit.mkdir(parents=True)
        provider = "claude" if n % 2 == 0 else "codex"
        (unit / "IMPLEMENTATION_PLAN.md").write_text(f"---\nprovider: {provider}\n---\n# Plan\n")
        (unit / "01-work.md").write_text(
            "---\ntask: 1\nstatus: pending\nbackpressure: none\n---\n# Work\n\nDo it.\n"
        )
    (root / ".choo.yaml").write_text(json.dumps({"parallelism": units, "attempts": 1}))


def count_tool_events(run_id: str) -> int:
    from choo.api import HistoryAPI
    from protocol.home import Home

    total, after = 0, 0
    with HistoryAPI.connect(Home.from_env()) as api:
        while True:
            page = api.get(
                f"/api/history/runs/{run_id}/events",
                type="task.agent.tool",
                after=after,
                limit=1000,
            )
            total += len(page["events"])
            if page["next_after"] is None:
                return total
            after = page["next_after"]


def busy_plan(units: int, tools: int) -> None:
    from choo.api import HistoryAPI
    from protocol.home import Home

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "repo"
        root.mkdir()
        make_plan(root, units)
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AGENT_TOOLS": str(tools),
        }
        start = time.perf_counter()
        done = subprocess.run(
            [str(CHOO), "run", "specs/tasks"], cwd=root, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"choo run failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        with HistoryAPI.connect(Home.from_env()) as api:
            (run,) = api.list_runs(repo=str(root.resolve()))["runs"]
        stored = count_tool_events(run["id"])
    expected = units * tools
    print(
        f"plan of {units} parallel units x {tools} tool calls: choo run took {wall:.2f} s; "
        f"{stored:,} of {expected:,} task.agent.tool events stored"
        + (" (none dropped)" if stored == expected else f" ({expected - stored:,} MISSING)")
    )
    if stored != expected:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--tools", type=int, default=5000)
    parser.add_argument("--emits", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed rounds; the best is held against the target")  # fmt: skip
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="chb", dir="/tmp"))  # short: a socket path lives here
    os.environ["CHOO_HOME"] = str(home)
    os.environ["CHOO_DAEMON_PORT"] = "0"
    started = subprocess.run([str(CHOO), "daemon", "start"], capture_output=True, text=True)
    if started.returncode != 0:
        raise SystemExit(f"the daemon did not start:\n{started.stdout}{started.stderr}")
    try:
        emit_cost(args.emits, args.rounds)
        busy_plan(args.units, args.tools)
    finally:
        subprocess.run([str(CHOO), "daemon", "stop"], capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
