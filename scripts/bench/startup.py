#!/usr/bin/env python3
"""Start-up and overhead benchmark.

Prints, for one run on this machine:
  - daemon start to socket-ready (process spawn until its socket answers a
    hello), p50 and max over N starts (target <= 300 ms, DESIGN.md section 9),
    and to its first status answer (which waits for the database to be open);
  - the same with continuous OTLP export configured (export.otlp.endpoint,
    pointing at a local receiver), and the daemon's memory (PSS and RSS of
    its two processes) both ways: at start, and with export after it sent a
    run; whether OpenTelemetry is loaded in the daemon (its status's
    export.otel_loaded: "opentelemetry" in its sys.modules), which must be
    no without export, and only after the first send with it;
  - `choo run` on the example plan with history against `--no-daemon`,
    alternating, median wall time of each and the overhead (target <= 2 %).

Usage: .venv/bin/python scripts/bench/startup.py [--starts 10] [--runs 3] [--skip-runs]
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


def daemon_ready_ms(home: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Spawn the daemon process; time it until its socket answers a hello
    (socket-ready), and until it answers a status request (the database is
    open too: status counts what it holds)."""
    from choo.daemonctl import query_status
    from protocol.home import Home

    start = time.perf_counter()
    proc = spawn_daemon(home, env)
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


def spawn_daemon(home: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    """The daemon as ``choo daemon start`` starts it: on the C allocator, set in
    its environment (started without, it would start itself again with it)."""
    from protocol.malloc import with_system_malloc

    return subprocess.Popen(
        [sys.executable, "-m", "choo_daemon", "--home", str(home), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=with_system_malloc(os.environ if env is None else env),
    )


# -- continuous export: start time, memory and OpenTelemetry, with and without ---------


def without_export() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CHOO_EXPORT_OTLP_")}


def with_export(url: str) -> dict[str, str]:
    return {**without_export(), "CHOO_EXPORT_OTLP_ENDPOINT": url}


def start_receiver() -> tuple[str, object]:
    """A local OTLP/HTTP receiver that takes every POST (200, empty body)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def memory_mb(pid: int) -> tuple[float, float]:
    """(PSS, RSS) in MB of the daemon and its database process together (PSS counts
    pages they share once)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    pss = rss = 0
    for one in pids:
        for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return pss / 1024, rss / 1024


def send_one_run(home: Path) -> None:
    """A run of one unit, start to end, through the daemon's socket."""
    import trio

    from choo.client import open_daemon_client
    from protocol.home import Home

    now = "2026-01-20T14:30:52.123Z"

    async def main() -> None:
        async with open_daemon_client(Home(home), name="bench") as client:
            run = f"run_bench_export_{os.getpid()}"
            await client.start_run(
                run, repo_path="/bench", started_at=now, parallelism=1, total_units=1
            )
            client.send_event(run, 1, "unit.started", time=now, unit="a")
            client.send_event(run, 2, "unit.completed", time=now, unit="a")
            await client.complete_run(run, status="completed", completed_at=now, completed_units=1)

    trio.run(main)


def export_status(home: Path) -> dict[str, object]:
    from choo.daemonctl import query_status
    from protocol.home import Home

    status = query_status(Home(home), timeout=2.0) or {}
    export: dict[str, object] = status.get("export") or {}
    return export


def idle_daemon(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float, float]:
    """A daemon started with ``env``, once its web server is up (all it loads at start)."""
    from choo.daemonctl import query_status
    from protocol.home import Home

    proc = spawn_daemon(home, env)
    while not (query_status(Home(home), timeout=0.5) or {}).get("web"):
        if proc.poll() is not None:
            raise SystemExit("the daemon exited while starting")
        time.sleep(0.01)
    return (proc, *memory_mb(proc.pid))


def export_figures(starts: int) -> None:
    url, server = start_receiver()
    home = Path(tempfile.mkdtemp(prefix="chx", dir="/tmp"))
    try:
        for label, env in (("export off", without_export()), ("export on ", with_export(url))):
            times = [daemon_ready_ms(home, env)[0] for _ in range(starts)]
            print(
                f"{label}: daemon start to socket-ready p50 {statistics.median(times):.0f} ms, "
                f"max {max(times):.0f} ms over {starts} starts"
            )
        proc, pss, rss = idle_daemon(home, without_export())
        loaded = export_status(home)["otel_loaded"]
        send_one_run(home)
        pss_after, rss_after = memory_mb(proc.pid)
        print(
            f"export off, started: PSS {pss:.1f} MB, RSS {rss:.1f} MB (daemon + database "
            f"process); after a run ended: PSS {pss_after:.1f} MB; "
            f"opentelemetry loaded: {loaded} / {export_status(home)['otel_loaded']}"
        )
        proc.terminate()
        proc.wait(30)
        proc, pss, rss = idle_daemon(home, with_export(url))
        loaded = export_status(home)["otel_loaded"]
        send_one_run(home)
        deadline = time.monotonic() + 60
        while export_status(home).get("sent") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        after = export_status(home)
        pss_after, rss_after = memory_mb(proc.pid)
        print(
            f"export on, started: PSS {pss:.1f} MB, RSS {rss:.1f} MB, opentelemetry loaded: "
            f"{loaded}; after sending a run (sent {after.get('sent')}): PSS {pss_after:.1f} MB "
            f"(+{pss_after - pss:.1f}), RSS {rss_after:.1f} MB, opentelemetry loaded: "
            f"{after.get('otel_loaded')}"
        )
        proc.terminate()
        proc.wait(30)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        shutil.rmtree(home, ignore_errors=True)


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
    parser.add_argument(
        "--skip-runs", action="store_true", help="only the daemon's figures, not `choo run`"
    )
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
        export_figures(args.starts)
        if args.skip_runs:
            return
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
