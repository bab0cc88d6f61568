#!/usr/bin/env python3
"""Query benchmark: history pages over HTTP on a large history (DESIGN.md section 9).

Builds a history of --runs runs and --events events straight into a fresh
CHOO_HOME's history.db with the store's write functions (big transactions),
starts a real daemon on it, and times sequential HTTP requests (httpx) of:
  - a page of the run list (newest first), one deep in it (by cursor), and
    the oldest page (oldest=1),
  - the first events page of the biggest run,
  - the deepest events page of that run (after = last seq - limit),
  - a filtered events page (type prefix "task." and one unit), first and deep,
    and the last page of a filter (before=), each with its count of matches,
  - the roll-ups of a run of --rollup-events events (its own repository):
    per unit (/units), per task and attempt (/tasks), and one task with its
    tool calls (/tasks?unit=&task=),
  - the cross-run task table of one repository (/api/history/tasks), over
    its share of the --runs runs,
  - full-text search (/api/history/search): a word most events hold, across
    every run, in one repository and within the biggest run; a rare word
    (one failed validation's error); a phrase; a prefix. Before these, the
    time the daemon took to index the history it found (the v5 catch-up,
    behind the writer).
Every run's events are what the orchestrator writes per task attempt
(task.started, task.claude.invoke, TOOLS task.agent.tool, task.agent.result,
task.claude.done, the validation, then task.retry or task.completed; one task
in five needs a second attempt), so the roll-ups are kept as they are built.
Prints p50/p95 per query (and the first request's time: for the finished
run's /units and /tasks the one that computes what later ones are given
again, choo_web/memo.py) and the deep/first ratio (targets: pages p95 <= 15 ms,
deep <= 1.5 x first; roll-ups of the run p95 <= 50 ms; the task table p95
<= 200 ms; search p95 <= 50 ms).

Usage: .venv/bin/python scripts/bench/query.py [--runs 10000] [--events 5000000]
       [--rollup-events 100000] [--requests 200] [--keep DIR]
       (DIR: a CHOO_HOME to build once and reuse)
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import apsw  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402

from choo_daemon import store  # noqa: E402
from choo_daemon.store.reads import encode_cursor  # noqa: E402
from protocol.home import Home, read_token  # noqa: E402

REPOS = [f"/home/dev/src/project-{n}" for n in range(5)]
UNITS = [f"unit-{n:02d}" for n in range(8)]
TOOLS = 20  # tool calls per attempt
ROLLUP_REPO = "/home/dev/src/big-plan"
ROLLUP_RUN = "run_bench_rollups"


def _json(**payload: object) -> str:
    return orjson.dumps(payload).decode()


TITLE = _json(title="Add the retry loop to the worker", max_attempts=3)
OUTPUT = "ok: 42 tests passed in 3.1s"


def _attempt_payloads(attempt: int) -> dict[str, str]:
    """Each task event's payload for one attempt number, as JSON text."""
    return {
        "task.claude.invoke": _json(provider="claude", attempt=attempt, program="claude",
                                    prompt_chars=4000, timeout_s=1800),
        "task.agent.tool": _json(attempt=attempt, tool="Bash", target="pytest -q tests/test_x.py",
                                 call_id="toolu_01", exit_code=0, is_error=False),
        "task.agent.result": _json(provider="claude", attempt=attempt, session_id="sess-1",
                                   model="claude-sonnet-4-5", status="success", is_error=False,
                                   turns=12, duration_ms=60_000, api_duration_ms=50_000,
                                   input_tokens=1200, output_tokens=3400,
                                   cache_read_tokens=80_000, cache_write_tokens=9000,
                                   cost_usd=0.42, cost_estimated=False, tool_calls=TOOLS,
                                   unparsed_lines=0),
        "task.claude.done": _json(provider="claude", attempt=attempt, exit_code=0,
                                  duration_ms=61_000, timed_out=False, output_tail=OUTPUT),
        "task.backpressure": _json(command="make test", attempt=attempt, timeout_s=600),
        "task.validation.ok": _json(command="make test", attempt=attempt, exit_code=0,
                                    duration_ms=3100, timed_out=False, output_tail=OUTPUT),
        "task.validation.fail": _json(command="make test", attempt=attempt, exit_code=1,
                                      duration_ms=3100, timed_out=False, output_tail="FAILED"),
        "task.retry": _json(attempt=attempt, next_attempt=attempt + 1, reason="failed",
                            stop_reason="validation_failed"),
        "task.completed": _json(title="Add the retry loop to the worker", attempts=attempt,
                                duration_ms=70_000 * attempt, flaky=attempt > 1,
                                stop_reason="passed" if attempt == 1 else "passed_after_retry"),
    }  # fmt: skip


PAYLOADS = {attempt: _attempt_payloads(attempt) for attempt in (1, 2)}


def task_steps() -> Iterator[tuple[str, str, int | None, str | None]]:
    """A run's events without end: units in turn, each task's attempts.

    (type, unit, task, payload JSON). Task numbers count from 1 in each unit,
    so the same (unit, task) comes back in every run of a repository.
    """
    numbers = dict.fromkeys(UNITS, 0)
    for turn in itertools.count():
        unit = UNITS[turn % len(UNITS)]
        numbers[unit] += 1
        task = numbers[unit]
        if task == 1:
            yield "unit.started", unit, None, '{"tasks":50,"pending":50}'
        yield "task.started", unit, task, TITLE
        tries = 2 if (task + turn) % 5 == 0 else 1
        for attempt in range(1, tries + 1):
            p = PAYLOADS[attempt]
            yield "task.claude.invoke", unit, task, p["task.claude.invoke"]
            for _ in range(TOOLS):
                yield "task.agent.tool", unit, task, p["task.agent.tool"]
            for kind in ("task.agent.result", "task.claude.done", "task.backpressure"):
                yield kind, unit, task, p[kind]
            if attempt < tries:
                yield "task.validation.fail", unit, task, p["task.validation.fail"]
                yield "task.retry", unit, task, p["task.retry"]
            else:
                yield "task.validation.ok", unit, task, p["task.validation.ok"]
                yield "task.completed", unit, task, p["task.completed"]


LIMIT = 100
BATCH = 200_000  # events per transaction while building


def run_id(n: int) -> str:
    return f"run_bench_{n:06d}"


def sizes(runs: int, events: int, big_share: float) -> list[int]:
    """Events per run: run 0 is the biggest, the rest share what is left."""
    big = int(events * big_share)
    rest, extra = divmod(events - big, runs - 1) if runs > 1 else (0, 0)
    return [big if runs > 1 else events] + [rest + (i < extra) for i in range(runs - 1)]


def event_rows(run: str, count: int, start: datetime) -> Iterator[store.EventRow]:
    steps = task_steps()
    for seq in range(1, count + 1):
        time_ = store.iso_utc(start + timedelta(milliseconds=seq))
        kind, unit, task, payload = next(steps)
        if kind == "task.validation.fail":  # an error of its own, for search to find
            payload = _json(command="make test", exit_code=1, output_tail=failure(run, seq))
        yield (run, seq, time_, kind, unit, task, None, payload, None)


def failure(run: str, seq: int) -> str:
    key = zlib.crc32(f"{run}/{seq}".encode()) % 100_003
    return f"FAILED tests/test_x.py::test_{seq % 97} - KeyError: 'key{key}'"


def build(path: Path, runs: int, events: int, big_share: float, rollup_events: int) -> None:
    """Write the history, about BATCH events per transaction."""
    conn = apsw.Connection(str(path))
    # A throwaway file built in one go: no journal, no fsync. The daemon
    # switches it to WAL when it opens it.
    conn.pragma("journal_mode", "off")
    conn.pragma("synchronous", "off")
    conn.pragma("cache_size", -1_000_000)
    store.migrate(conn)
    counts = sizes(runs, events, big_share)
    now = datetime.now(UTC).replace(microsecond=0)
    began = time.perf_counter()
    written = 0
    n = 0
    while n < runs:
        with conn:
            budget = BATCH
            while n < runs and budget > 0:
                # The biggest run is the oldest; runs start a minute apart,
                # recent enough that retention keeps them all.
                started = now - timedelta(minutes=runs - n + 60)
                written += _write_run(conn, n, counts[n], started)
                budget -= counts[n]
                n += 1
        _progress(written, events, began)
    with conn:
        started = now - timedelta(minutes=30)
        _write_run(conn, -1, rollup_events, started, run=ROLLUP_RUN, repo=ROLLUP_REPO)
        for run in (run_id(0), ROLLUP_RUN):
            store.store_graph(conn, run, [{"id": u} for u in UNITS], [], [UNITS])
    conn.execute("ANALYZE")
    conn.close()
    print(file=sys.stderr)


def _write_run(
    conn: apsw.Connection,
    n: int,
    count: int,
    started: datetime,
    *,
    run: str | None = None,
    repo: str | None = None,
) -> int:
    run = run or run_id(n)
    store.create_run(
        conn,
        run_id=run,
        repo_path=repo or REPOS[n % len(REPOS)],
        started_at=store.iso_utc(started),
        parallelism=4,
        total_units=len(UNITS),
        tasks_dir="tasks",
    )
    added = 0
    rows = event_rows(run, count, started)
    while chunk := list(itertools.islice(rows, 100_000)):
        added += store.append_events(conn, chunk)
    status = "failed" if n % 10 == 3 else "stopped" if n % 25 == 7 else "completed"
    store.complete_run(
        conn,
        run,
        status=status,
        completed_at=store.iso_utc(started + timedelta(seconds=30)),
        completed_units=len(UNITS) - (status != "completed"),
        failed_units=int(status == "failed"),
        blocked_units=0,
    )
    return added


def _progress(written: int, total: int, began: float) -> None:
    rate = written / max(time.perf_counter() - began, 1e-9)
    print(f"\r  built {written:,} / {total:,} events ({rate:,.0f}/s)", end="", file=sys.stderr)


def start_daemon(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = home / "bench-daemon.log"
    log.unlink(missing_ok=True)
    # The database process logs to its stderr (the daemon's log when detached).
    with (home / "bench-daemon.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "choo_daemon", "--home", str(home), "--port", "0",
             "--log-file", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "CHOO_HOME": str(home)},
        )  # fmt: skip
    return proc, web_url(proc, log)


def web_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The web URL a starting bench daemon logs once it is ready (it is killed if it never is)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        found = re.search(r"ready: .* web (http://[^,\s]+)", text)
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with code {proc.returncode}:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the daemon did not get ready within 60 s")


def measure(client: httpx.Client, url: str, requests: int) -> tuple[float, float, int, float]:
    """(p50 ms, p95 ms, items in the page, first request's ms) over ``requests``
    sequential GETs, after a warm-up that begins with the first request."""
    began = time.perf_counter()
    client.get(url).raise_for_status()
    first = time.perf_counter() - began
    for _ in range(max(10, requests // 10)):  # warm up: connection, caches
        client.get(url).raise_for_status()
    times: list[float] = []
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - began)
        response.raise_for_status()
    body = response.json()
    found = body.get("matches", body.get("units", body.get("tasks", [])))
    items = len(body.get("runs", body.get("events", found)))
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, items, first * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--big-share", type=float, default=0.2,
                        help="share of all events in the biggest run (default 0.2)")  # fmt: skip
    parser.add_argument("--rollup-events", type=int, default=100_000,
                        help="events of the run whose roll-ups are timed")  # fmt: skip
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query")
    parser.add_argument("--keep", type=Path, help="CHOO_HOME to build in once and reuse")
    args = parser.parse_args()

    home = args.keep or Path(tempfile.mkdtemp(prefix="chq", dir="/tmp"))
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = home / "history.db"
    if db.exists() and args.keep:
        print(f"reusing {db}", file=sys.stderr)
    else:
        print(f"building {args.runs:,} runs, {args.events:,} events in {db}", file=sys.stderr)
        began = time.perf_counter()
        build(db, args.runs, args.events, args.big_share, args.rollup_events)
        size = db.stat().st_size / 2**20
        print(f"  built in {time.perf_counter() - began:.0f} s, {size:,.0f} MiB", file=sys.stderr)

    proc, web = start_daemon(home)
    try:
        wait_indexed(web, Home(home))
        report(web, args.requests, Home(home))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def wait_indexed(web: str, home: Home) -> None:
    """Wait for the daemon to index the history it found; print how long it took
    and its log's lines about it."""
    auth = {"Authorization": f"Bearer {read_token(home)}"}
    began = time.perf_counter()
    with httpx.Client(base_url=web, timeout=30, headers=auth) as client:
        while unindexed := client.get("/api/history/search", params={"q": "x"}).json()["unindexed"]:
            print(f"\r  search index: {unindexed:,} events to go", end="", file=sys.stderr)
            time.sleep(1)
    took = time.perf_counter() - began
    log = (home.root / "bench-daemon.err").read_text()
    lines = [line for line in log.splitlines() if "search:" in line]
    print(f"\nsearch index of the history found at start: {took:.0f} s to catch up (from the log:")
    for line in lines[:1] + lines[-2:]:
        print(f"  {line}")
    print(")")


def report(web: str, requests: int, home: Home) -> None:
    auth = {"Authorization": f"Bearer {read_token(home)}"}  # the daemon made it at its start
    with httpx.Client(base_url=web, timeout=30, headers=auth) as client:
        health = client.get("/api/health").json()
        total = client.get("/api/history/runs", params={"limit": 1}).json()["total"]
        biggest = client.get(f"/api/history/runs/{run_id(0)}").json()  # built first, so oldest
        big, last = biggest["id"], biggest["last_seq"]
        # A cursor 90% of the way down the run list.
        deep_run = client.get(f"/api/history/runs/{run_id(max(total // 10, 1))}").json()
        cursor = encode_cursor(deep_run["started_at"], deep_run["id"])
        events = f"/api/history/runs/{big}/events"
        rollups = f"/api/history/runs/{ROLLUP_RUN}"
        queries = [
            ("baseline: /api/health (no read)", "/api/health"),
            ("run list, first page (50)", "/api/history/runs?limit=50"),
            ("run list, deep page (cursor)", f"/api/history/runs?limit=50&cursor={cursor}"),
            ("run list, status=failed", "/api/history/runs?limit=50&status=failed"),
            ("run list, oldest page", "/api/history/runs?limit=50&oldest=1"),
            ("events, first page", f"{events}?limit={LIMIT}"),
            ("events, deepest page", f"{events}?limit={LIMIT}&after={last - LIMIT}"),
            ("filtered (task. + unit), first", f"{events}?limit={LIMIT}&type=task.&unit=unit-03"),
            (
                "filtered (task. + unit), deep",
                f"{events}?limit={LIMIT}&type=task.&unit=unit-03&after={last - 20 * LIMIT}",
            ),
            (
                "filtered (task.), last (before)",
                f"{events}?limit={LIMIT}&type=task.&before={last + 1}",
            ),
            (
                "filtered (task. + unit), last",
                f"{events}?limit={LIMIT}&type=task.&unit=unit-03&before={last + 1}",
            ),
            ("roll-ups: run detail (totals)", rollups),
            ("roll-ups: per unit", f"{rollups}/units"),
            ("roll-ups: per task, one unit", f"{rollups}/tasks?unit=unit-03"),
            ("roll-ups: one task, with tools", f"{rollups}/tasks?unit=unit-03&task=2"),
            ("roll-ups: per task, whole run", f"{rollups}/tasks"),
            ("task table, one repo", f"/api/history/tasks?repo={REPOS[0]}"),
        ]
        search = "/api/history/search"
        rare = client.get(f"{events}?type=task.validation.fail&limit=1").json()["events"][0]
        tail = rare["payload"]["output_tail"]
        quoted = tail.rsplit("'", 2)  # ... KeyError: 'key12345'
        # A history built before the failures named their keys: its tail's last word.
        rare_word = quoted[1] if len(quoted) == 3 else tail.split()[-1]
        queries += [
            ("search: common word, all runs", f"{search}?q=pytest"),
            ("search: common word, one repo", f"{search}?q=pytest&repo={REPOS[0]}"),
            ("search: common word, big run", f"{search}?q=pytest&run={big}"),
            ("search: rare word, all runs", f"{search}?q={rare_word}"),
            ("search: rare word, big run", f"{search}?q={rare_word}&run={big}"),
            ("search: phrase, all runs", f'{search}?q="tests passed"'),
            ("search: prefix + word, one repo", f"{search}?q=keyerr*%20test_42&repo={REPOS[1]}"),
        ]
        print(
            f"\nhistory: {total:,} runs, {health['events_stored']:,} events; "
            f"biggest run {big}: {biggest['event_count']:,} events; {requests} requests each\n"
        )
        print(f"{'query':34} {'p50 ms':>8} {'p95 ms':>8} {'items':>6} {'first ms':>9}")
        results: dict[str, tuple[float, float, int, float]] = {}
        for name, url in queries:
            results[name] = measure(client, url, requests)
            p50, p95, items, once = results[name]
            print(f"{name:34} {p50:8.2f} {p95:8.2f} {items:6d} {once:9.2f}")
    first, deep = results["events, first page"], results["events, deepest page"]
    pages = [
        r
        for name, r in results.items()
        if not name.startswith(("roll-ups", "task table", "search"))
    ]
    print(
        f"\ndeep/first events page: p50 {deep[0] / first[0]:.2f}x, p95 {deep[1] / first[1]:.2f}x"
        f"  (target <= 1.5x); worst p95 of the pages {max(r[1] for r in pages):.2f} ms"
        "  (target <= 15 ms)"
    )
    searched = [r for name, r in results.items() if name.startswith("search")]
    print(f"search: worst p95 {max(r[1] for r in searched):.2f} ms (target <= 50 ms)")
    rolled = [r for name, r in results.items() if name.startswith("roll-ups")]
    table = results["task table, one repo"]
    print(
        f"roll-ups of a run: worst p95 {max(r[1] for r in rolled):.2f} ms (target <= 50 ms);"
        f" task table: p95 {table[1]:.2f} ms (target <= 200 ms)"
    )
    print(
        "first ms: the first request after the daemon's start; for the finished run's"
        " /units and /tasks it is the one that computes the answer (worst:"
        f" {max(r[3] for name, r in results.items() if name.startswith('roll-ups: per')):.2f}"
        " ms), which later requests are given as kept (choo_web/memo.py)"
    )


if __name__ == "__main__":
    main()
