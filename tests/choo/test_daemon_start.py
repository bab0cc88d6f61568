"""Starting the daemon while other processes start, kill or hold it, and
while the machine is too busy for any fixed deadline.

Each scenario is set up step by step (a pid file held by the test, a web
server held back, a clock moved on), never left to a race.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trio
from rich.console import Console

from choo import daemonctl
from choo.client import open_daemon_client
from choo.config import load
from choo.runner import RunRequest, execute
from choo_daemon.daemon import Daemon, DaemonOptions
from choo_daemon.pidfile import hold_pidfile
from protocol.home import Home
from tests.choo.support import make_repo, plan_md, task_md, wait_until


async def test_a_run_shows_the_web_url_of_a_daemon_whose_web_server_is_still_starting(
    home: Home, tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another `choo run` has just started the daemon: its socket answers,
    its web server is not up yet. This run waits for the URL."""
    release_web = trio.Event()
    serve_web = Daemon._serve_web

    async def held_back(self: Daemon, *, task_status: trio.TaskStatus[str]) -> None:
        await release_web.wait()
        await serve_web(self, task_status=task_status)

    monkeypatch.setattr(Daemon, "_serve_web", held_back)
    home.root.mkdir(mode=0o700, exist_ok=True)
    daemon = Daemon(DaemonOptions(home=home, port=0, retention_days=None))
    real_status = daemon.status

    def status() -> dict[str, Any]:
        answer = real_status()
        if answer["web"] is None:
            release_web.set()  # the run has seen a status without a URL: now bring it up
        return answer

    monkeypatch.setattr(daemon, "status", status)
    nursery.start_soon(daemon.serve)
    while True:  # wait for the socket without asking for a status
        try:
            await (await trio.open_unix_socket(str(home.socket))).aclose()
            break
        except OSError:
            await trio.sleep(0.01)

    repo = make_repo(
        tmp_path / "repo",
        {"a/IMPLEMENTATION_PLAN.md": plan_md(), "a/01-t.md": task_md(1, "One")},
    )
    console = Console(file=io.StringIO(), width=250)
    request = RunRequest(tasks_dir=repo.tasks_dir, config=load(repo.root), home=home, dry_run=True)
    outcome = await execute(request, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]

    assert outcome.exit_code == 0, output
    assert daemon.web_url is not None and release_web.is_set()
    assert outcome.web_url == daemon.web_url
    assert f"live at {daemon.web_url}" in output
    daemon.request_shutdown()


def test_a_start_whose_daemon_lost_the_race_starts_one_when_the_winner_dies_unanswered(
    home: Home,
) -> None:
    """Our daemon finds CHOO_HOME taken and exits; the one that took it dies
    before answering (here: the test holds the pid file, then lets go)."""
    with ThreadPoolExecutor(1) as pool:
        with hold_pidfile(home.pidfile):
            starting = pool.submit(daemonctl.start, home, daemonctl.DaemonSettings(port=0))
            wait_until(
                lambda: home.log.exists() and "already running" in home.log.read_text(),
                timeout=60,
                what="the daemon we started to find CHOO_HOME taken",
            )
        result = starting.result(timeout=120)
    assert result.status["web"]
    assert result.status["pid"] != os.getpid()
    assert daemonctl.stop(home) == result.status["pid"]


class SlowClock:
    """``time`` for daemonctl whose clock the test moves on, as a busy machine would."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_a_start_is_not_given_up_while_each_step_takes_less_than_the_timeout(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spawning, taking CHOO_HOME, answering: each step takes 3/4 of the
    timeout, the whole start more than the timeout; only a step that takes
    the whole timeout is a daemon stuck."""
    clock = SlowClock()
    monkeypatch.setattr(daemonctl, "time", clock)
    polls: list[int] = []
    query_status = daemonctl.query_status

    def counted(home: Home, timeout: float = 2.0) -> dict[str, Any] | None:
        polls.append(1)
        return query_status(home, timeout)

    monkeypatch.setattr(daemonctl, "query_status", counted)
    real_spawn = daemonctl._spawn
    stalled = subprocess.Popen(["sleep", "120"])  # a daemon that never gets anywhere

    def spawn(home: Home, settings: Any) -> subprocess.Popen[bytes]:
        return stalled if stalled.returncode is None else real_spawn(home, settings)

    monkeypatch.setattr(daemonctl, "_spawn", spawn)

    def a_slow_step() -> None:
        seen = len(polls)
        # Two polls: the second began after the step, so the loop has seen it.
        wait_until(lambda: len(polls) >= seen + 2, timeout=60, what="start to poll")
        clock.ahead += 0.75 * daemonctl.START_TIMEOUT

    try:
        with ThreadPoolExecutor(1) as pool:
            starting = pool.submit(daemonctl.start, home, daemonctl.DaemonSettings(port=0))
            a_slow_step()  # nothing holds CHOO_HOME yet
            with hold_pidfile(home.pidfile):
                a_slow_step()  # held, but no answer on the socket
            stalled.kill()  # it dies; the real daemon it is replaced by answers
            stalled.wait()
            result = starting.result(timeout=120)
    finally:
        if stalled.poll() is None:
            stalled.kill()
            stalled.wait()
    assert clock.ahead > daemonctl.START_TIMEOUT
    assert result.status["web"]
    assert daemonctl.stop(home) == result.status["pid"]


async def test_a_client_that_starts_the_daemon_does_not_count_a_slow_start_against_its_timeout(
    home: Home, nursery: trio.Nursery
) -> None:
    """The first start takes longer than the connect timeout and its daemon
    is gone before the client connects (killed, say); the second start's
    daemon is there. The client waits for it rather than giving up."""
    home.root.mkdir(mode=0o700, exist_ok=True)
    daemon = Daemon(DaemonOptions(home=home, port=0, retention_days=None))
    starts: list[float] = []

    async def ensure_daemon() -> None:
        starts.append(trio.current_time())
        if len(starts) == 1:
            await trio.sleep(1.0)  # a slow start, on a busy machine, of a daemon that then dies
        else:
            await nursery.start(daemon.serve)

    async with open_daemon_client(
        home, name="test", connect_timeout=0.5, ensure_daemon=ensure_daemon
    ) as client:
        assert (await client.status())["pid"] == os.getpid()
    assert len(starts) == 2
    daemon.request_shutdown()
