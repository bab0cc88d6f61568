#!/usr/bin/env python3
"""Start-up and overhead benchmark.

Prints, for one run on this machine:
  - daemon start to socket-ready (process spawn until its socket answers a
    hello), p50 and max over N starts (target <= 300 ms, DESIGN.md section 9),
    and to its first status answer (which waits for the database to be open);
  - `choo run` on the example plan with history against `--no-daemon`,
    alternating, median wall time of each and the overhead (target <= 2 %).

Usage: .venv/bin/python scripts/bench/startup.py [--starts 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
CHOO = str(Path(sys.executable).with_name("choo"))


def welcomed(home: Path) -> bool:
    """True once the daemon's socket answers a hello with its welcome."""
    import socket

    import protocol

    hello = {"t": "hello", "v": protocol.PROTOCOL_VERSION, "client": "bench", "pid": os.getpid()}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(str(home / "daemon.sock"))
            sock.sendall(protocol.encode(hello))
            decoder = protocol.FrameDecoder()
            while not (messages := decoder.feed(sock.recv(65536) or b"")):
                pass
            return bool(messages[0]["t"] == "welcome")
    except OSError:
        return False


def daemon_ready_ms(home: Path) -> tuple[float, float]:
    """Spawn the daemon process; time it until its socket answers a hello
    (socket-ready), and until it answers a status request (the database is
    open too: status counts what it holds)."""
    from choo.daemonctl import query_status
    from protocol.home import Home

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "choo_daemon", "--home", str(home), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not welcomed(home):
        if proc.poll() is not None:
            raise SystemExit("the daemon exited while starting")
        time.sleep(0.002)
    socket_ready = (time.perf_counter() - start) * 1000
    while query_status(Home(home), timeout=0.5) is None:
        if proc.poll() is not None:
            raise SystemExit("the daemon exited while starting")
        time.sleep(0.002)
    status_ready = (time.perf_counter() - start) * 1000
    proc.terminate()
    proc.wait(timeout=30)
    return socket_ready, status_ready


def run_plan(home: Path, *flags: str) -> float:
    work = Path(tempfile.mkdtemp(prefix="chs", dir="/tmp"))
    try:
        shutil.copytree(ROOT / "examples", work, dirs_exist_ok=True)
        subprocess.run(["git", "init", "-q", str(work)], check=True)
        start = time.perf_counter()
        subprocess.run(
            [CHOO, "run", "specs/tasks", *flags],
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "CHOO_HOME": str(home)},
        )
        return time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="chb", dir="/tmp"))
    os.environ["CHOO_DAEMON_PORT"] = "0"
    try:
        times = [daemon_ready_ms(home) for _ in range(args.starts)]
        starts, statuses = [t[0] for t in times], [t[1] for t in times]
        print(
            f"daemon start to socket-ready: p50 {statistics.median(starts):.0f} ms, "
            f"max {max(starts):.0f} ms over {args.starts} starts (target <= 300 ms)"
        )
        print(
            f"daemon start to status answered (database open): "
            f"p50 {statistics.median(statuses):.0f} ms, max {max(statuses):.0f} ms"
        )
        subprocess.run(
            [CHOO, "daemon", "start", "--port", "0"],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "CHOO_HOME": str(home)},
        )
        with_history, isolated = [], []
        for _ in range(args.runs):
            with_history.append(run_plan(home))
            isolated.append(run_plan(home, "--no-daemon"))
        a, b = statistics.median(with_history), statistics.median(isolated)
        print(
            f"choo run, example plan: with history {a:.2f} s, --no-daemon {b:.2f} s "
            f"(median of {args.runs}); overhead {100 * (a / b - 1):+.1f} % (target <= 2 %)"
        )
    finally:
        subprocess.run(
            [CHOO, "daemon", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "CHOO_HOME": str(home)},
        )
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
