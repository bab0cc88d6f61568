#!/usr/bin/env python3
"""What a git worktree per unit costs.

Runs one plan of U independent units of T tasks each (an agent that writes
one file, a validation that checks it) with `choo run --no-daemon`, in a
committed repository, isolated (a worktree per unit, a commit per task, a
merge per unit) and `--in-place`, alternating, R times each. Prints the
median wall time of each, and the isolation's cost per unit and per task.

Usage: .venv/bin/python scripts/bench/isolation.py [--units 8] [--tasks 3] [--runs 3]
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

CHOO = str(Path(sys.executable).with_name("choo"))
AGENT = """import re, sys
from pathlib import Path
prompt = Path(sys.argv[-1]).read_text()
unit = re.search(r"unit `([^`]+)`", prompt).group(1)
task = re.search(r"task (\\d+):", prompt).group(1)
Path(f"out/{unit}-{task}.txt").parent.mkdir(exist_ok=True)
Path(f"out/{unit}-{task}.txt").write_text(unit + "\\n")
"""


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def make_repo(root: Path, units: int, tasks: int, agent: Path) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    settings = {
        "provider": {"name": "command", "command": [sys.executable, str(agent), "{prompt_file}"]},
        "parallelism": 4,
    }
    (root / ".choo.yaml").write_text(json.dumps(settings))
    for u in range(units):
        folder = root / "specs" / "tasks" / f"u{u}"
        folder.mkdir(parents=True)
        (folder / "IMPLEMENTATION_PLAN.md").write_text("# Plan\n")
        for t in range(1, tasks + 1):
            (folder / f"0{t}-step.md").write_text(
                f"---\ntask: {t}\nstatus: pending\n"
                f'backpressure: "test -f out/u{u}-{t}.txt"\n---\n# Step {t}\n\nWrite it.\n'
            )
    git(root, "add", "-A")
    git(root, "-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "plan")


def one_run(scratch: Path, n: int, isolated: bool, units: int, tasks: int, agent: Path) -> float:
    root = scratch / f"repo{n}-{'iso' if isolated else 'inplace'}"
    make_repo(root, units, tasks, agent)
    args = [CHOO, "run", "specs/tasks", "--no-daemon"] + ([] if isolated else ["--in-place"])
    env = {**os.environ, "CHOO_HOME": str(scratch / "home")}
    started = time.perf_counter()
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"choo run failed:\n{done.stdout}\n{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="choo-iso-bench-"))
    try:
        agent = scratch / "agent.py"
        agent.write_text(AGENT)
        times: dict[bool, list[float]] = {True: [], False: []}
        for n in range(args.runs):
            for isolated in (False, True):
                times[isolated].append(one_run(scratch, n, isolated, args.units, args.tasks, agent))
        iso, inplace = statistics.median(times[True]), statistics.median(times[False])
        extra = iso - inplace
        print(f"{args.units} units x {args.tasks} tasks, parallelism 4, {args.runs} runs each")
        print(f"  in place:  median {inplace:.2f} s")
        print(f"  isolated:  median {iso:.2f} s  (x{iso / inplace:.2f})")
        print(
            f"  isolation: +{extra:.2f} s per run, {extra / args.units * 1000:.0f} ms per unit, "
            f"{extra / (args.units * args.tasks) * 1000:.0f} ms per task"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
