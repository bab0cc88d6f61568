#!/usr/bin/env python3
"""Live fan-out benchmark: browsers' event streams on a real daemon under ingest.

In one run, on this machine (DESIGN.md section 9, "Live fan-out"):
  1. load: --live viewers on /api/live and --run-viewers on one busy run's
     stream, while --runs clients (orchestrator-like, each its own socket
     connection, --per-process of them to a process) each ingest --rate
     events/s for --seconds. Targets: 0 streams dropped; event -> viewer
     p99 <= 100 ms, the time from an event's sending (in its payload) to its
     arrival at each viewer of the run's stream. /api/live sends no events,
     only each run's state, at most once per COALESCE_S (board.py): the
     bench prints how old the latest event a state names is when the state
     arrives, and checks it against COALESCE_S + 100 ms (a run's last event
     before a pause waits up to COALESCE_S for the next state).
     The bench's own processes share the machine's cores with the daemon;
     it prints what they used. One process per orchestrator (--per-process
     1) costs about a core on 2 cores, and the daemon then waits for CPU.
     It also prints the CPU time the host took from this VM (steal): on a
     shared host, a run with much of it measures the neighbours.
  2. idle: --idle viewers connected to /api/live. Targets: API p95 <= 50 ms
     (run list, an events page, health: sequential GETs), the daemon's
     memory <= 120 MB PSS; then memory after they leave (and the daemon
     has given it back, twice: choo_web/crowds.py), against the baseline
     before they came (taken once the load phase's viewers, a crowd too,
     have had theirs given back).

Usage: .venv/bin/python scripts/bench/live.py [--runs 16] [--rate 400]
       [--per-process 4] [--seconds 20] [--live 100] [--run-viewers 20]
       [--idle 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import h11
import httpx
import orjson
import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from query import web_url  # noqa: E402 (this folder: the ready line, read as query.py does)

from choo_web.board import COALESCE_S  # noqa: E402
from choo_web.crowds import CROWD  # noqa: E402

STATE_AGE_MS = COALESCE_S * 1000 + 100

REPO = "/bench/live"
UNITS = 8
TYPES = ("unit.started", "task.started", "task.claude.invoke", "task.completed", "unit.completed")
TITLE = "Add the retry loop to the worker"


def iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def run_id(index: int) -> str:
    return f"run_20260101_000000_live{index:02d}"


# -- the orchestrator-like clients (--per-process to a process) ------------------


def worker(indexes: list[int], rate: float, seconds: float, go_at: float, out: Path) -> None:
    """Runs ``indexes``, each its own client (connection): start the run, send
    ``rate`` events/s for ``seconds`` (a few every 10 ms), complete it. Writes
    every ack's latency, in seconds, as JSON to ``out`` (a pipe would fill up)."""
    from choo.client import open_daemon_client
    from protocol.home import Home

    async def one(index: int, acks: list[float]) -> None:
        run = run_id(index)
        sent_at: deque[tuple[int, float]] = deque()

        def on_ack(_run: str, seq: int) -> None:
            now = time.time()
            while sent_at and sent_at[0][0] <= seq:
                acks.append(now - sent_at.popleft()[1])

        async with open_daemon_client(Home.from_env(), name=f"live{index}") as client:
            client.on_ack = on_ack
            await client.start_run(
                run, repo_path=REPO, started_at=iso_now(), parallelism=4, total_units=UNITS
            )
            await trio.sleep(max(go_at - time.time(), 0))
            start = time.perf_counter()
            per_tick = max(1, int(rate / 100))
            for seq in range(1, int(rate * seconds) + 1):
                client.send_event(
                    run,
                    seq,
                    TYPES[seq % len(TYPES)],
                    time=iso_now(),
                    unit=f"u{seq % UNITS}",
                    task=seq % 3,
                    payload={"sent": time.time(), "title": TITLE},
                )
                if seq % 10 == 0:
                    sent_at.append((seq, time.time()))
                if seq % per_tick == 0:
                    await trio.sleep(max(start + seq / rate - time.perf_counter(), 0))
            await client.wait_acked(run)
            await client.complete_run(
                run, status="completed", completed_at=iso_now(), completed_units=UNITS
            )

    async def main() -> list[float]:
        acks: list[float] = []
        async with trio.open_nursery() as nursery:
            for index in indexes:
                nursery.start_soon(one, index, acks)
        return acks

    out.write_bytes(orjson.dumps(trio.run(main)))


# -- the browsers -----------------------------------------------------------------


@dataclass
class Figures:
    latencies: list[float] = field(default_factory=list)  # seconds
    opened: int = 0
    ended: int = 0  # streams that ended with "end" (their run is over)
    dropped: int = 0  # streams that ended otherwise, or failed
    catchups: int = 0
    readies: int = 0
    messages: int = 0


class Viewer:
    """One SSE client on a raw socket (h11), calling ``on_message(event, data, now)``."""

    def __init__(self, host: str, port: int, token: str, path: str) -> None:
        self.host, self.port, self.token, self.path = host, port, token, path
        self.ready = trio.Event()

    async def serve(self, on_message: Callable[[str, bytes, float], None]) -> str:
        """Until the stream ends or the task is cancelled; "end", "eof" or an error."""
        conn = h11.Connection(h11.CLIENT)
        async with await trio.open_tcp_stream(self.host, self.port) as stream:
            request = h11.Request(
                method="GET",
                target=self.path,
                headers=[
                    ("Host", "127.0.0.1"),
                    ("Accept", "text/event-stream"),
                    ("Authorization", f"Bearer {self.token}"),
                ],
            )
            await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
            buffer = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(1 << 16)
                    if not data:
                        return "eof"
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    if event.status_code != 200:
                        return f"HTTP {event.status_code}"
                elif isinstance(event, h11.Data):
                    buffer += bytes(event.data)
                    *blocks, buffer = buffer.split(b"\n\n")
                    now = time.time()
                    for block in blocks:
                        name, data = parse(block)
                        if name == "end":
                            return "end"
                        if name:
                            self.ready.set()
                            on_message(name, data, now)
                else:
                    return "eof"


def parse(block: bytes) -> tuple[str, bytes]:
    name, data = "", b""
    for line in block.split(b"\n"):
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
    return name, data


_SECONDS: dict[str, float] = {}


def epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO time in UTC ("...T00:05:40.123Z"), cheaply:
    this process must keep up with a hundred viewers."""
    whole = iso[:19]
    base = _SECONDS.get(whole)
    if base is None:
        base = _SECONDS[whole] = datetime.fromisoformat(whole + "+00:00").timestamp()
    fraction = iso[19:].rstrip("Z")
    return base + float(fraction) if fraction else base


def on_run_message(figures: Figures) -> Callable[[str, bytes, float], None]:
    def take(name: str, data: bytes, now: float) -> None:
        figures.messages += 1
        if name == "catchup":
            figures.catchups += 1
        elif name == "event":
            # The payload's "sent", without parsing the whole event (this process must keep up).
            at = data.find(b'"sent":')
            if at >= 0:
                figures.latencies.append(now - float(data[at + 7 : data.index(b",", at)]))

    return take


def on_live_message(figures: Figures) -> Callable[[str, bytes, float], None]:
    def take(name: str, data: bytes, now: float) -> None:
        figures.messages += 1
        if name == "ready":
            figures.readies += 1
        elif name == "run.state":
            # The latest event's time, without parsing the whole state.
            at = data.find(b'"last_event":{')
            if at >= 0:
                at = data.index(b'"time":"', at) + 8
                figures.latencies.append(now - epoch(data[at : data.index(b'"', at)].decode()))

    return take


async def watch(viewer: Viewer, on_message: Any, figures: Figures) -> None:
    figures.opened += 1
    try:
        how = await viewer.serve(on_message)
    except OSError as error:
        how = str(error)
    finally:
        viewer.ready.set()  # ended before its first message: do not wait for it
    if how == "end":
        figures.ended += 1
    else:
        figures.dropped += 1
        print(f"    stream {viewer.path} ended: {how}", file=sys.stderr)


def viewer_group(url: str, token: str, path: str, count: int, kind: str) -> None:
    """A process of ``count`` viewers of ``path``: says "ready" once each has had its
    first message, watches until stdin closes, then prints its figures as JSON."""

    async def main() -> None:
        parsed = httpx.URL(url)
        figures = Figures()
        take = on_run_message(figures) if kind == "run" else on_live_message(figures)
        async with trio.open_nursery() as nursery:
            group = [Viewer(parsed.host, parsed.port or 80, token, path) for _ in range(count)]
            for v in group:
                nursery.start_soon(watch, v, take, figures)
            for v in group:
                await v.ready.wait()
            print("ready", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)
            nursery.cancel_scope.cancel()
        print(orjson.dumps(figures.__dict__).decode(), flush=True)

    trio.run(main)


def open_groups(
    url: str, token: str, path: str, count: int, kind: str, size: int = 25
) -> list[subprocess.Popen[str]]:
    """Viewers in processes of ``size`` (a browser's tabs are not all in one Python process)."""
    procs = []
    for first in range(0, count, size):
        argv = [sys.executable, __file__, "--viewer-group", path, "--group-size"]
        argv += [str(min(size, count - first)), "--kind", kind, "--url", url, "--token", token]
        procs.append(
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"a viewer group of {path} did not get ready")
    return procs


def close_groups(procs: list[subprocess.Popen[str]]) -> Figures:
    total = Figures()
    for proc in procs:
        out, _ = proc.communicate()
        got = orjson.loads(out)
        for name, value in got.items():
            setattr(total, name, getattr(total, name) + value)
    return total


# -- measuring --------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def api_p95(client: httpx.AsyncClient, requests: int) -> tuple[float, float]:
    """(p50, p95) ms over sequential GETs of a run list, an events page and health."""
    urls = [
        "/api/history/runs?limit=50",
        f"/api/history/runs/{run_id(0)}/events?limit=100",
        "/api/health",
    ]
    times: list[float] = []
    for n in range(requests):
        began = time.perf_counter()
        response = await client.get(urls[n % len(urls)])
        times.append(time.perf_counter() - began)
        response.raise_for_status()
    return pct(times, 50), pct(times, 95)


async def wait_for(client: httpx.AsyncClient, check: Callable[[Any], bool], what: str) -> Any:
    with trio.fail_after(120):
        while True:
            health = (await client.get("/api/health")).json()
            if check(health):
                return health
            await trio.sleep(0.1)
    raise AssertionError(what)


# -- the run ------------------------------------------------------------------------


def start_daemon(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = home / "bench-daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "choo_daemon", "--home", str(home), "--port", "0",
         "--log-file", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CHOO_HOME": str(home)},
    )  # fmt: skip
    return proc, web_url(proc, log)


async def bench(args: argparse.Namespace, home: Path, pid: int, url: str) -> bool:
    from protocol.home import Home, read_token

    token = read_token(Home(home))
    assert token is not None
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    helpers = children(pid)
    ok = True
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        crowds_before = (await client.get("/api/health")).json()["live"]["crowds_left"]
        # -- 1. load -------------------------------------------------------------
        total = args.runs * args.rate
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min)")
        print(
            f"load: {args.runs} runs x {args.rate:g} events/s = {total:,.0f} events/s for "
            f"{args.seconds:g} s; {args.live} viewers on /api/live, {args.run_viewers} on "
            f"{run_id(0)}'s stream"
        )
        go_at = time.time() + 8 + 0.5 * args.runs
        argv = [sys.executable, __file__, "--worker", "--rate", str(args.rate)]
        argv += ["--seconds", str(args.seconds), "--go-at", str(go_at)]
        env = {**os.environ, "CHOO_HOME": str(home)}
        groups = [
            ",".join(map(str, range(first, min(first + args.per_process, args.runs))))
            for first in range(0, args.runs, args.per_process)
        ]
        procs = [
            subprocess.Popen([*argv, "--index", group, "--out", str(home / f"a{n}")], env=env)  # noqa: ASYNC220
            for n, group in enumerate(groups)
        ]
        live_procs = open_groups(url, token, "/api/live", args.live, "live")
        with trio.fail_after(60):  # the busy run must exist before its stream opens
            while (await client.get(f"/api/history/runs/{run_id(0)}")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.1)
        stream = f"/api/history/runs/{run_id(0)}/stream"
        run_procs = open_groups(url, token, stream, args.run_viewers, "run", size=5)
        if time.time() > go_at:
            print("  (the viewers connected after ingest began)")
        cpu_before, db_before = cpu_seconds(pid), sum(map(cpu_seconds, helpers))
        reaped_before, steal_before, load_began = reaped_cpu(), stolen_seconds(), time.monotonic()
        peak = 0.0
        while any(p.poll() is None for p in procs):
            peak = max(peak, pss_mb(pid))
            await trio.sleep(0.25)
        cpu = cpu_seconds(pid) - cpu_before
        db_cpu = sum(map(cpu_seconds, helpers)) - db_before
        workers_cpu = reaped_cpu() - reaped_before
        steal = (stolen_seconds() - steal_before) / (time.monotonic() - load_began)
        acks = [
            x
            for n, p in enumerate(procs)
            if not p.returncode
            for x in orjson.loads((home / f"a{n}").read_bytes())
        ]
        failed = sum(1 for p in procs if p.returncode)
        if failed:
            print(
                f"  {failed} of {len(procs)} client processes FAILED (see above): partial figures"
            )
            ok = False
        await trio.sleep(2)  # the last events, states and run.finished
        reaped_before = reaped_cpu()
        runs, live = close_groups(run_procs), close_groups(live_procs)
        viewers_cpu = reaped_cpu() - reaped_before
        health = (await client.get("/api/health")).json()
        dropped = live.dropped + runs.dropped + health["live"]["subscribers_dropped"]
        print(
            f"  streams dropped      : {dropped} (viewers' ends {live.dropped + runs.dropped}, "
            f"hub drops {health['live']['subscribers_dropped']})   {verdict(dropped == 0)}"
        )
        run_p99 = pct(runs.latencies, 99)
        live_p99 = pct(live.latencies, 99)
        print(
            f"  run stream           : event -> viewer p50 {pct(runs.latencies, 50):.1f} ms, "
            f"p99 {run_p99:.1f} ms over {len(runs.latencies):,} deliveries; "
            f"{runs.catchups} catchup(s)   {verdict(run_p99 <= 100)}"
        )
        print(
            f"  /api/live            : latest event age p50 {pct(live.latencies, 50):.1f} ms,"
            f" p99 {live_p99:.1f} ms over {len(live.latencies):,} run.state messages "
            f"({live.messages / max(args.live, 1):,.0f} messages per viewer)   "
            f"{verdict(live_p99 <= STATE_AGE_MS)} (<= {STATE_AGE_MS:.0f} ms: states are "
            f"coalesced to one per {COALESCE_S * 1000:.0f} ms)"
        )
        print(
            f"  ingest alone         : event -> ack (durable) p50 {pct(acks, 50):.1f} ms, "
            f"p99 {pct(acks, 99):.1f} ms (the floor under event -> viewer)"
        )
        print(
            f"  daemon               : {cpu / args.seconds * 100:.0f} % of a core (trio "
            f"process) and {db_cpu / args.seconds * 100:.0f} % (database process), "
            f"peak {peak:.1f} MB PSS (trio process)"
        )
        print(
            f"  the bench's own load : {workers_cpu / args.seconds * 100:.0f} % of a core "
            f"(the {args.runs} orchestrators in {len(procs)} processes), "
            f"{viewers_cpu / args.seconds * 100:.0f} % (the viewers' processes), "
            f"on {os.cpu_count()} cores in all"
        )
        print(
            f"  the host's own       : {steal * 100:.0f} % of a core stolen from this VM "
            "(/proc/stat steal: figures from a run where it is high are the host's, not ours)"
        )
        ok &= dropped == 0 and run_p99 <= 100 and live_p99 <= STATE_AGE_MS

        # -- 2. idle viewers ---------------------------------------------------------
        await wait_for(client, lambda h: h["live"]["subscribers"] == 0, "viewers gone")
        if args.live + args.run_viewers >= CROWD:
            # Those viewers were a crowd too: the baseline is after their memory
            # went back, and the idle crowd's give-back is told apart from theirs.
            await wait_for(
                client, lambda h: h["live"]["crowds_left"] > crowds_before, "memory given back"
            )
        await trio.sleep(2)
        base_main, base_all = pss_mb(pid), pss_mb(pid) + sum(map(pss_mb, helpers))
        print(f"idle: {args.idle} viewers on /api/live, nothing running")
        q50, q95 = await api_p95(client, args.requests)
        print(f"  API without viewers  : p50 {q50:.1f} ms, p95 {q95:.1f} ms (this machine, now)")
        print(
            f"  memory before        : {base_main:.1f} MB PSS trio process, {base_all:.1f} MB both"
        )
        left = (await client.get("/api/health")).json()["live"]["crowds_left"]
        idle = Figures()
        async with trio.open_nursery() as viewers:
            started = time.perf_counter()
            opened: list[Viewer] = []
            for _ in range(args.idle):
                v = Viewer(host, port, token, "/api/live")
                opened.append(v)
                viewers.start_soon(watch, v, on_live_message(idle), idle)
            with trio.fail_after(120):
                for v in opened:
                    await v.ready.wait()
            print(
                f"  connected            : {idle.readies} ready in "
                f"{time.perf_counter() - started:.2f} s"
            )
            p50, p95 = await api_p95(client, args.requests)
            mem_main = pss_mb(pid)
            mem_all = mem_main + sum(map(pss_mb, helpers))
            print(
                f"  API with them        : p50 {p50:.1f} ms, p95 {p95:.1f} ms over "
                f"{args.requests} GETs   {verdict(p95 <= 50)}"
            )
            print(
                f"  memory with them     : {mem_main:.1f} MB PSS trio process, {mem_all:.1f} MB "
                f"both   {verdict(mem_all <= 120)}"
            )
            ok &= p95 <= 50 and mem_all <= 120
            viewers.cancel_scope.cancel()
        if args.idle >= CROWD:  # the daemon gives a crowd's memory back once it has gone
            await wait_for(client, lambda h: h["live"]["crowds_left"] > left, "memory given back")
        else:
            await wait_for(client, lambda h: h["live"]["subscribers"] == 0, "viewers gone")
        after_main = pss_mb(pid)
        after_all = after_main + sum(map(pss_mb, helpers))
        back = after_all <= base_all + 10
        print(
            f"  memory after leaving : {after_main:.1f} MB PSS trio process, {after_all:.1f} MB "
            f"both ({after_all - base_all:+.1f} MB against before)   {verdict(back)}"
        )
        ok &= back and idle.dropped == 0  # none ended before we left
    return ok


def reaped_cpu() -> float:
    """CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stolen_seconds() -> float:
    """CPU time the host gave to others while this VM wanted it (all CPUs; /proc/stat "steal")."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--rate", type=float, default=400, help="events/s per run")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--live", type=int, default=100, help="viewers on /api/live")
    parser.add_argument("--run-viewers", type=int, default=20, help="viewers of one run")
    parser.add_argument("--idle", type=int, default=1000, help="idle viewers on /api/live")
    parser.add_argument("--requests", type=int, default=300, help="API GETs timed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--per-process",
        type=int,
        default=4,
        help="orchestrator clients (connections) per process (their CPU is the bench's)",
    )
    parser.add_argument("--index", default="0", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--go-at", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--viewer-group", help=argparse.SUPPRESS)
    parser.add_argument("--group-size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.viewer_group:
        viewer_group(args.url, args.token, args.viewer_group, args.group_size, args.kind)
        return
    if args.worker:
        indexes = [int(i) for i in args.index.split(",")]
        worker(indexes, args.rate, args.seconds, args.go_at, Path(args.out))
        return
    home = Path(tempfile.mkdtemp(prefix="chl", dir="/tmp"))
    proc, url = start_daemon(home)
    try:
        ok = trio.run(bench, args, home, proc.pid, url)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min)")
    print("all targets met" if ok else "some targets NOT met (see FAIL above)")


if __name__ == "__main__":
    main()
