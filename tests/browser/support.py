"""Helpers for the browser tests: a daemon subprocess, a history writer, fake runs.

The tests are plain (synchronous) functions driving Chromium through
Playwright's sync API. The history is written the way an orchestrator
writes it: ``choo run`` on a copy of ``examples/``, or a real
``DaemonClient`` on its own thread (with its own trio loop), which the
tests drive through ``trio.from_thread``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from playwright.sync_api import BrowserContext

from choo.client import DaemonClient, open_daemon_client
from choo_daemon.store import iso_utc
from protocol.home import Home, read_token

CHOO = Path(sys.executable).with_name("choo")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    """A daemon started as a subprocess, with its own CHOO_HOME."""

    root: Path
    url: str = ""
    port: int = 0
    login: str = ""  # the URL `choo daemon start` printed that logs a browser in

    @property
    def home(self) -> Home:
        return Home(self.root)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CHOO_HOME": str(self.root), "CHOO_DAEMON_PORT": "0"}

    def choo(self, *args: str, cwd: Path | None = None, timeout: float = 60) -> str:
        result = subprocess.run(
            [str(CHOO), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"choo {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def start(self, port: int = 0) -> None:
        printed = self.choo("daemon", "start", "--port", str(port))
        status = json.loads(self.choo("daemon", "status", "--json"))
        self.url = status["web"]
        self.port = int(self.url.rsplit(":", 1)[1])
        (self.login,) = re.findall(r"log in: (\S+)", printed)

    def get_json(self, path: str, **params: Any) -> Any:
        """GET an API path (with query parameters), as a program does: a Bearer token."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        token = read_token(self.home)
        request = urllib.request.Request(
            f"{self.url}{path}{'?' + query if query else ''}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)

    def stop(self) -> None:
        subprocess.run(
            [str(CHOO), "daemon", "stop"],
            capture_output=True,
            timeout=30,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )


def log_in(context: BrowserContext, site: Site) -> None:
    """Log ``context`` in through the URL ``choo daemon start`` printed: the
    daemon trades its token for a cookie, then sends the browser to "/"."""
    response = context.request.get(site.login)
    assert response.ok and response.url == f"{site.url}/", (response.status, response.url)
    (cookie,) = [c for c in context.cookies(site.url) if c["name"] == "choo_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie


def new_site() -> Site:
    root = Path(tempfile.mkdtemp(prefix="chb", dir="/tmp"))  # short: socket path limit
    root.chmod(0o700)
    return Site(root)


def remove_site(site: Site) -> None:
    site.stop()
    shutil.rmtree(site.root, ignore_errors=True)


def example_repo() -> Path:
    """A scratch git repository holding a copy of examples/."""
    repo = Path(tempfile.mkdtemp(prefix="choo-example-")).resolve()
    shutil.copytree(EXAMPLES, repo, dirs_exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, capture_output=True)
    return repo


def start_example_run(site: Site, repo: Path) -> subprocess.Popen[str]:
    """``choo run specs/tasks`` in ``repo``, in the background."""
    return subprocess.Popen(
        [str(CHOO), "run", "specs/tasks"],
        cwd=repo,
        env=site.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class Writer:
    """A DaemonClient on a thread of its own, driven from synchronous tests."""

    def __init__(self, home: Home) -> None:
        self._home = home
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.client: DaemonClient | None = None
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise RuntimeError(f"the history writer did not connect: {self._error!r}")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by __init__ or close
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with open_daemon_client(self._home, name="browser-tests") as client:
            self.client = client
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``await fn(client, *args)`` on the writer's loop and return its result."""
        return trio.from_thread.run(fn, self.client, *args, trio_token=self._token)

    def close(self) -> None:
        if self._stop is not None and self._token is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(15)
        if self._error is not None:
            raise self._error


# --- fake runs --------------------------------------------------------------


def graph_of(units: dict[str, Sequence[str]], tasks: int) -> dict[str, Any]:
    """Nodes, edges and levels (longest path) of units given as {unit: its dependencies}."""
    level: dict[str, int] = {}

    def depth(unit: str) -> int:
        if unit not in level:
            level[unit] = 1 + max((depth(d) for d in units[unit]), default=-1)
        return level[unit]

    for unit in units:
        depth(unit)
    levels = [[u for u in units if level[u] == n] for n in range(max(level.values()) + 1)]
    return {
        "nodes": [
            {"id": u, "tasks": tasks, "done": 0, "depends_on": list(d)} for u, d in units.items()
        ],
        "edges": [{"from": u, "to": d} for u, deps in units.items() for d in deps],
        "levels": levels,
    }


EXAMPLE_UNITS: dict[str, Sequence[str]] = {
    "config": [],
    "models": ["config"],
    "storage": ["config"],
    "api": ["models", "storage"],
    "cli": ["models"],
    "docs": ["api", "cli"],
}


@dataclass
class FakeRun:
    """A run written event by event, as an orchestrator would."""

    writer: Writer
    run_id: str
    repo: str
    units: dict[str, Sequence[str]] = field(default_factory=lambda: dict(EXAMPLE_UNITS))
    tasks: int = 2
    started: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=5))
    step: timedelta = timedelta(milliseconds=350)
    dry_run: bool = False
    seq: int = 0
    clock: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.clock = self.started

    def start(self, *, graph: bool = True) -> FakeRun:
        shape = graph_of(self.units, self.tasks)

        async def go(client: DaemonClient) -> None:
            await client.start_run(
                self.run_id,
                repo_path=self.repo,
                started_at=iso_utc(self.started),
                parallelism=2,
                total_units=len(self.units),
                tasks_dir=f"{self.repo}/specs/tasks",
                dry_run=self.dry_run,
            )
            if graph:
                await client.graph(self.run_id, shape["nodes"], shape["edges"], shape["levels"])

        self.writer.call(go)
        return self

    def event(
        self, type: str, unit: str | None = None, task: int | None = None, **payload: Any
    ) -> dict[str, Any]:
        self.seq += 1
        self.clock += self.step
        return {
            "seq": self.seq,
            "type": type,
            "time": iso_utc(self.clock),
            "unit": unit,
            "task": task,
            "payload": payload or None,
        }

    def send(self, events: list[dict[str, Any]]) -> None:
        """Send events and wait until the daemon has stored them."""

        async def go(client: DaemonClient) -> None:
            for e in events:
                client.send_event(self.run_id, **e)
            await client.wait_acked(self.run_id)

        self.writer.call(go)

    def emit(
        self, type: str, unit: str | None = None, task: int | None = None, **payload: Any
    ) -> int:
        self.send([self.event(type, unit, task, **payload)])
        return self.seq

    def unit_events(self, unit: str, *, fail_task: int | None = None) -> list[dict[str, Any]]:
        """A unit's events from queued to completed (or failed at ``fail_task``)."""
        e = self.event
        out = [
            e("unit.queued", unit, tasks=self.tasks, depends_on=list(self.units[unit])),
            e("unit.started", unit, tasks=self.tasks, pending=self.tasks, provider="command"),
        ]
        for task in range(1, self.tasks + 1):
            title = f"{unit.capitalize()} part {task}"
            out += [
                e("task.started", unit, task, title=title, max_attempts=3),
                e("task.claude.invoke", unit, task, provider="command", attempt=1),
                e("task.claude.done", unit, task, exit_code=0, duration_ms=812),
                e("task.backpressure", unit, task, command="python3 -m py_compile x.py"),
            ]
            if task == fail_task:
                out += [
                    e("task.validation.fail", unit, task, exit_code=1, attempt=3),
                    e("task.failed", unit, task, attempts=3, reason="validation failed 3 times"),
                    e("unit.failed", unit, error="task 1 failed"),
                ]
                return out
            out += [
                e("task.validation.ok", unit, task, exit_code=0, duration_ms=140),
                e("task.completed", unit, task, title=title, attempts=1, duration_ms=1210),
            ]
        out.append(e("unit.completed", unit, tasks=self.tasks, duration_ms=2600))
        return out

    def complete(
        self,
        status: str = "completed",
        *,
        completed_units: int = 0,
        failed_units: int = 0,
        blocked_units: int = 0,
    ) -> None:
        self.clock += self.step

        async def go(client: DaemonClient) -> None:
            await client.complete_run(
                self.run_id,
                status=status,
                completed_at=iso_utc(self.clock),
                completed_units=completed_units,
                failed_units=failed_units,
                blocked_units=blocked_units,
            )

        self.writer.call(go)

    def resume(self, reason: str) -> int:
        self.clock += timedelta(minutes=2)

        async def go(client: DaemonClient) -> int:
            last: int = await client.append_resume_marker(
                self.run_id, time=iso_utc(self.clock), reason=reason
            )
            return last

        self.seq = self.writer.call(go)
        return self.seq


def big_run_events(run: FakeRun, total: int) -> Iterator[dict[str, Any]]:
    """``total`` events spread over the run's units, task by task."""
    per_unit = total // len(run.units)
    units = list(run.units)
    for n, unit in enumerate(units):
        count = per_unit if n < len(units) - 1 else total - per_unit * (len(units) - 1)
        yield run.event("unit.started", unit, tasks=run.tasks, pending=run.tasks)
        body = count - 2
        per_task = body // run.tasks
        for task in range(1, run.tasks + 1):
            size = per_task if task < run.tasks else body - per_task * (run.tasks - 1)
            kinds = ("task.claude.invoke", "task.claude.done", "task.backpressure")
            for i in range(size - 1):
                yield run.event(kinds[i % 3], unit, task, attempt=i // 3 + 1)
            yield run.event("task.completed", unit, task, attempts=size // 3)
        yield run.event("unit.completed", unit, tasks=run.tasks)


def send_many(run: FakeRun, events: Iterator[dict[str, Any]]) -> None:
    """Queue a great many events at once (the client batches them), then wait for acks."""

    async def go(client: DaemonClient) -> None:
        for n, e in enumerate(events):
            client.send_event(run.run_id, **e)
            if n % 5000 == 4999:
                await trio.lowlevel.checkpoint()  # let the client's sender drain its queue
        await client.wait_acked(run.run_id)

    run.writer.call(go)
