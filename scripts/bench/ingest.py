#!/usr/bin/env python3
"""Ingest benchmark: N client processes stream M events each through a real daemon.

Prints, for one run on this machine:
  - end-to-end throughput (events/s, counted when acked, i.e. durable),
  - ack latency p50/p99 at full speed and at a fixed offered rate (default 50k/s),
  - the daemon's peak memory: PSS of its two processes (shared pages counted
    once), sampled, and each one's peak RSS,
  - the rate of a bare apsw batched insert of the same rows into the same schema,
    and the ratio daemon / bare (target >= 0.5, DESIGN.md section 9).

Every event is a --type event (default task.validation.ok): a task.* type
goes through the roll-ups the database process keeps (store/rollups.py),
other types (unit.started, say) do not.

Usage: .venv/bin/python scripts/bench/ingest.py [--clients 8] [--events 50000]
       [--type task.validation.ok]
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
from collections import deque
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PAYLOAD = {
    "title": "Add the retry loop to the worker",
    "attempt": 1,
    "exit_code": 0,
    "duration_ms": 1234,
    "output_tail": "ok: 42 tests passed in 3.1s\n" * 6,
}
NOW = "2026-01-20T14:30:52.123Z"
SAMPLE_EVERY = 20  # time one event in this many for the latency figures


def worker(index: int, events: int, rate: float, go_at: float, kind: str) -> None:
    """One client process: start a run, stream, wait for every ack, print JSON."""
    import trio

    from choo.client import open_daemon_client
    from protocol.home import Home

    async def main() -> dict[str, float | list[float]]:
        run = f"run_bench_{os.getpid()}_{index}"
        sent_at: deque[tuple[int, float]] = deque()
        latencies: list[float] = []

        def on_ack(_run: str, seq: int) -> None:
            now = time.perf_counter()
            while sent_at and sent_at[0][0] <= seq:
                latencies.append(now - sent_at.popleft()[1])

        async with open_daemon_client(Home.from_env(), name=f"bench{index}") as client:
            client.on_ack = on_ack
            await client.start_run(
                run, repo_path="/bench", started_at=NOW, parallelism=8, total_units=1
            )
            # Everyone starts together, once every process is up and connected.
            await trio.sleep(max(go_at - time.time(), 0))
            start = time.perf_counter()
            # Flat out, yield every 200 events; at a set rate, send as a busy
            # orchestrator would: a few events at a time, every millisecond or two.
            chunk = 200 if not rate else max(1, int(rate / 500))
            for seq in range(1, events + 1):
                if seq % SAMPLE_EVERY == 0:
                    sent_at.append((seq, time.perf_counter()))
                client.send_event(
                    run,
                    seq,
                    kind,
                    time=NOW,
                    unit="unit-a",
                    task=seq % 7,
                    payload=PAYLOAD,
                )
                if seq % chunk == 0:
                    if rate:
                        ahead = start + seq / rate - time.perf_counter()
                        await trio.sleep(max(ahead, 0))
                    else:
                        await trio.lowlevel.checkpoint()
            await client.wait_acked(run)
            finished = time.time()
        return {"finished": finished, "latencies": latencies}

    print(orjson.dumps(trio.run(main)).decode())


def run_clients(clients: int, events: int, rate: float, kind: str) -> tuple[float, list[float]]:
    """Wall time from the common start to the last ack, and the ack latencies."""
    go_at = time.time() + 1.5 + 0.25 * clients  # after every client has started up
    argv = [
        sys.executable,
        __file__,
        "--worker",
        "--events",
        str(events),
        "--rate",
        str(rate),
        "--go-at",
        str(go_at),
        "--type",
        kind,
    ]
    procs = [
        subprocess.Popen([*argv, "--index", str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(clients)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a client failed with code {proc.returncode}")
        results.append(orjson.loads(out))
    if min(r["finished"] for r in results) < go_at:
        raise SystemExit("clients started late; raise the start delay")
    wall = max(r["finished"] for r in results) - go_at
    latencies = [x for r in results for x in r["latencies"]]
    return wall, latencies


def bare_insert(
    path: Path, clients: int, events: int, kind: str, batch: int = 5000, *, index: bool = False
) -> float:
    """The same rows, inserted with apsw in batched transactions, same schema and sync.

    ``index``: each batch also indexes its rows for search in its transaction
    (what indexing at write time would cost; the daemon indexes behind).
    """
    from choo_daemon import store
    from choo_daemon.store import search
    from protocol import payload_json

    conn = store.open_write_connection(path)
    payload = payload_json(PAYLOAD)
    rows_per_run = [
        [
            (
                f"run_bare_{c}",
                seq,
                NOW,
                kind,
                "unit-a",
                seq % 7,
                None,
                payload,
                None,
            )
            for seq in range(1, events + 1)
        ]
        for c in range(clients)
    ]
    with conn:
        for c in range(clients):
            store.create_run(
                conn,
                run_id=f"run_bare_{c}",
                repo_path="/bench",
                started_at=NOW,
                parallelism=8,
                total_units=1,
            )
    sql = (
        "INSERT OR IGNORE INTO events(run_id, seq, time, type, unit, task, pr, payload, error)"
        " VALUES (?,?,?,?,?,?,?,?,?)"
    )
    start = time.perf_counter()
    # Interleave runs as concurrent clients would.
    for offset in range(0, events, batch // clients):
        with conn:
            for rows in rows_per_run:
                conn.executemany(sql, rows[offset : offset + batch // clients])
            if index:
                search.index_pending(conn, batch + clients)
    elapsed = time.perf_counter() - start
    conn.close()
    return clients * events / elapsed


def search_catch_up(db: Path) -> float:
    """Seconds until the search index holds every stored event (polled)."""
    from choo_daemon import store
    from choo_daemon.store.search import indexed_id

    start = time.perf_counter()
    conn = store.open_read_connection(db)
    try:
        while True:
            with conn:
                last = conn.execute("SELECT coalesce(max(id), 0) FROM events").get
                if indexed_id(conn) >= last:
                    return time.perf_counter() - start
            time.sleep(0.01)
    finally:
        conn.close()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def pss_mb(pids: list[int]) -> float:
    """Their proportional set size: shared pages (the Python binary, libsqlite)
    counted once between them, not once per process as in RSS."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class PeakPss:
    """Samples the daemon's processes' PSS every 20 ms in a thread; keeps the peak."""

    def __init__(self, pids: list[int]) -> None:
        import threading

        self.pids = pids
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, pss_mb(self.pids))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=50_000, help="events per client")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=50_000,
        help="total offered events/s for the latency phase (0: skip it)",
    )
    parser.add_argument("--type", default="task.validation.ok", help="the events' type")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--go-at", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.index, args.events, args.rate, args.go_at, args.type)
        return

    home = Path(tempfile.mkdtemp(prefix="chb", dir="/tmp"))
    os.environ["CHOO_HOME"] = str(home)
    choo = [sys.executable, "-m", "choo"]
    try:
        subprocess.run(
            [*choo, "daemon", "start", "--port", "0"], check=True, stdout=subprocess.DEVNULL
        )
        pid = int((home / "daemon.pid").read_text())
        helpers = children(pid)  # the database process
        sampler = PeakPss([pid, *helpers])
        total = args.clients * args.events
        print(
            f"ingest: {args.clients} clients x {args.events:,} {args.type} events"
            f" = {total:,} events"
        )

        procs = [pid, *helpers]
        cpu_before = [cpu_seconds(p) for p in procs]
        wall, lat = run_clients(args.clients, args.events, rate=0, kind=args.type)
        cpu = [cpu_seconds(p) - before for p, before in zip(procs, cpu_before, strict=True)]
        caught_up = search_catch_up(home / "history.db")
        rate = total / wall
        print(
            f"  daemon, full speed   : {rate:12,.0f} events/s acked "
            f"({wall:.2f} s); ack latency p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms"
        )
        print(
            f"  CPU per event        : {cpu[0] / total * 1e6:9.1f} µs trio process, "
            f"{sum(cpu[1:]) / total * 1e6:.1f} µs database process (full-speed phase)"
        )
        print(
            f"  search index         : {caught_up:12.2f} s after the last ack until every "
            "event was searchable (indexed behind the writer)"
        )
        if args.latency_rate:
            per_client = args.latency_rate / args.clients
            n = max(1000, min(args.events, int(per_client * 3)))
            wall2, lat2 = run_clients(args.clients, n, rate=per_client, kind=args.type)
            print(
                f"  daemon at {args.latency_rate:,.0f}/s offered: "
                f"{args.clients * n / wall2:,.0f} events/s; ack latency "
                f"p50 {pct(lat2, 50):.1f} ms, p99 {pct(lat2, 99):.1f} ms"
            )
        pss = sampler.stop()
        rss = peak_rss_mb(pid)
        helper_rss = sum(peak_rss_mb(child) for child in helpers)
        print(
            f"  daemon peak memory   : {pss:12.1f} MB PSS, both processes (sampled every 20 ms); "
            f"peak RSS {rss:.1f} MB trio process, {helper_rss:.1f} MB database process"
        )
        subprocess.run([*choo, "daemon", "stop"], check=True, stdout=subprocess.DEVNULL)

        bare = bare_insert(home / "bare.db", args.clients, args.events, args.type)
        print(f"  bare apsw batched    : {bare:12,.0f} events/s")
        print(f"  ratio daemon / bare  : {rate / bare:12.2f}   (target >= 0.5)")
        indexed = bare_insert(home / "bare-indexed.db", args.clients, args.events, args.type,
                              index=True)  # fmt: skip
        print(
            f"  bare + search index  : {indexed:12,.0f} events/s, {indexed / bare:.2f} x bare"
            " (indexing in the insert's transaction: what the daemon avoids)"
        )
    finally:
        subprocess.run(
            [*choo, "daemon", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
