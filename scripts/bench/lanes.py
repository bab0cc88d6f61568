#!/usr/bin/env python3
"""Lanes benchmark: a 40-unit run with 100k events, its Lanes tab drawn in Chromium (issue 15).

Starts a daemon of its own (a temporary CHOO_HOME), writes one run through
a real client: 40 units in 8 levels of 5 (each depending on two of the
level before), 5 tasks each, one attempt in three retried (validation
failed), the rest of the 100k events tool calls spread over the attempts;
units of a level run side by side. Then, in headless Chromium, opens the
run's events and switches to the Lanes tab, --repeat times (a fresh page
each time), and prints:

- ``GET /lanes`` as a program sees it (median, max over the repeats);
- open: from the click on "Lanes →" to the drawn SVG (request + draw);
- draw: the drawing alone (LanesView.render, the page's own clock);
- zoom: one zoom step (every bar placed again).

Target: draw <= 500 ms (and open, which includes the request, too).

Usage: .venv/bin/python scripts/bench/lanes.py [--events 100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from choo_daemon.store import iso_utc  # noqa: E402
from tests.browser.support import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    FakeRun,
    Writer,
    log_in,
    new_site,
    remove_site,
    send_many,
)

LEVELS, WIDTH, TASKS = 8, 5, 5
TARGET_MS = 500

OPEN_JS = """() => new Promise((resolve) => {
  const t0 = performance.now();
  document.querySelector(".tl-card .pane-link-lanes").click();
  const check = () => {
    const svg = document.querySelector("svg.lanes-svg[data-ready]");
    if (!svg) return requestAnimationFrame(check);
    requestAnimationFrame(() => resolve({
      open: performance.now() - t0,
      draw: +document.querySelector(".lanes-body").dataset.drawMs,
      bars: +svg.dataset.bars,
    }));
  };
  check();
})"""

ZOOM_JS = """() => {
  const t0 = performance.now();
  document.querySelector(".lanes-zoom[aria-label='zoom in']").click();
  return performance.now() - t0;
}"""


def units() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for level in range(LEVELS):
        for i in range(WIDTH):
            deps = [] if level == 0 else [f"u{level - 1}{i}", f"u{level - 1}{(i + 1) % WIDTH}"]
            out[f"u{level}{i}"] = deps
    return out


def run_events(run: FakeRun, total: int) -> Iterator[dict[str, Any]]:
    """The run's events: per unit, its tasks' attempts, tool calls filling up to ``total``."""
    names = list(run.units)
    retries = sum((n + task) % 3 == 0 for n in range(len(names)) for task in range(1, TASKS + 1))
    attempts = len(names) * TASKS + retries
    fixed = len(names) * (3 + TASKS * 2) + attempts * 4 + retries
    tools = max(0, total - fixed) // attempts
    extra = max(0, total - fixed) - tools * attempts
    seq = 0

    def ev(at: datetime, kind: str, unit: str, task: int | None = None, **p: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {
            "seq": seq,
            "type": kind,
            "time": iso_utc(at),
            "unit": unit,
            "task": task,
            "payload": p or None,
        }

    for n, unit in enumerate(names):
        level, slot = divmod(n, WIDTH)
        clock = run.started + timedelta(minutes=level * 40, seconds=slot * 20)
        yield ev(clock, "unit.queued", unit, tasks=TASKS)
        clock += timedelta(seconds=5)
        yield ev(clock, "unit.started", unit, tasks=TASKS, pending=TASKS)
        for task in range(1, TASKS + 1):
            yield ev(clock, "task.started", unit, task, title=f"{unit} part {task}")
            retried = (n + task) % 3 == 0
            for attempt in (1, 2) if retried else (1,):
                calls = tools + (1 if extra > 0 else 0)
                extra -= 1
                yield ev(clock, "task.claude.invoke", unit, task, attempt=attempt)
                for c in range(calls):
                    at = clock + timedelta(milliseconds=150_000 * (c + 1) // (calls + 1))
                    yield ev(
                        at,
                        "task.agent.tool",
                        unit,
                        task,
                        attempt=attempt,
                        tool="Bash",
                        target=f"make {c}",
                    )
                clock += timedelta(seconds=150)
                yield ev(clock, "task.claude.done", unit, task, exit_code=0, duration_ms=150_000)
                yield ev(
                    clock, "task.backpressure", unit, task, command="make check", attempt=attempt
                )
                clock += timedelta(seconds=20)
                failed = retried and attempt == 1
                kind = "task.validation.fail" if failed else "task.validation.ok"
                yield ev(
                    clock,
                    kind,
                    unit,
                    task,
                    command="make check",
                    duration_ms=20_000,
                    attempt=attempt,
                )
                if failed:
                    yield ev(
                        clock, "task.retry", unit, task, attempt=1, stop_reason="validation_failed"
                    )
            yield ev(clock, "task.completed", unit, task, attempts=2 if retried else 1)
        yield ev(clock + timedelta(seconds=2), "unit.completed", unit, tasks=TASKS)
    run.seq = seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    site = new_site()
    writer = None
    try:
        site.start()
        writer = Writer(site.home)
        started = datetime.now(UTC) - timedelta(hours=8)
        run = FakeRun(
            writer,
            "run_20260301_090000_lane",
            "/srv/lanes",
            units=units(),
            tasks=TASKS,
            started=started,
        )
        run.start()
        began = time.perf_counter()
        send_many(run, run_events(run, args.events))
        run.complete("completed", completed_units=len(run.units))
        detail = site.get_json(f"/api/history/runs/{run.run_id}")
        print(
            f"run: {len(run.units)} units, {detail['event_count']:,} events,"
            f" {detail['totals']['attempts']} attempts"
            f" (written in {time.perf_counter() - began:.1f} s)"
        )
        api_ms = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            lanes = site.get_json(f"/api/history/runs/{run.run_id}/lanes")
            api_ms.append((time.perf_counter() - t0) * 1000)
        path = lanes["critical_path"]
        units_on = " -> ".join(s["unit"] for s in path["steps"])
        print(f"critical path: {units_on} ({path['duration_ms'] / 60000:.1f} min)")
        opens, draws, zooms = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(args.repeat):
                context = browser.new_context(
                    viewport={"width": 1280, "height": 900}, base_url=site.url
                )
                log_in(context, site)
                page = context.new_page()
                page.goto(f"/#/history?run={run.run_id}")
                page.locator(".ev[data-seq='1']").wait_for()
                page.locator("g.node").first.wait_for()
                got = page.evaluate(OPEN_JS)
                opens.append(got["open"])
                draws.append(got["draw"])
                zooms.append(page.evaluate(ZOOM_JS))
                bars = got["bars"]
                context.close()
            browser.close()
        print(f"bars drawn: {bars}")
        for name, values in (
            ("GET /lanes", api_ms),
            ("open (click -> drawn)", opens),
            ("draw (render only)", draws),
            ("zoom step", zooms),
        ):
            each = " ".join(f"{v:.0f}" for v in values)
            middle = statistics.median(values)
            print(f"{name:24s} median {middle:7.1f} ms   max {max(values):7.1f} ms   [{each}]")
        worst = max(max(opens), max(draws))
        verdict = "OK" if worst <= TARGET_MS else "OVER"
        print(f"target: draw <= {TARGET_MS} ms: {verdict} (worst open {max(opens):.0f} ms)")
    finally:
        if writer is not None:
            writer.close()
        remove_site(site)


if __name__ == "__main__":
    main()
