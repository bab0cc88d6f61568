"""Continuous export from the daemon to a real Phoenix: runs arrive as they end,
and wait in the outbox while Phoenix is away, then arrive once it is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from choo.api import HistoryAPI
from choo.history import iter_events
from protocol.home import Home
from protocol.otlp import map_run, trace_id
from tests.choo.support import choo_env, run_choo, stop_daemon
from tests.daemon.otlp_receiver import wait_for
from tests.otlp.conftest import Phoenix

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.phoenix


def status() -> dict[str, Any]:
    result = run_choo("daemon", "status", "--json", cwd=Path.cwd())
    assert result.returncode == 0, result.stdout + result.stderr
    found: dict[str, Any] = orjson.loads(result.stdout)
    return found


def export_status() -> dict[str, Any]:
    found: dict[str, Any] = status()["export"]
    return found


def record_examples(root: Path, home: Home) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the examples plan in a new copy under ``root``; the run and its events."""
    repo = root / "examples"
    shutil.copytree(EXAMPLES, repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    with HistoryAPI.connect(home) as api:
        before = {r["id"] for r in api.list_runs()["runs"]}
    result = run_choo("run", "specs/tasks", cwd=repo, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    with HistoryAPI.connect(home) as api:
        (new,) = [r for r in api.list_runs()["runs"] if r["id"] not in before]
        run = api.get_run(new["id"])
        return run, list(iter_events(api, run["id"]))


def trace_of(run: dict[str, Any]) -> str:
    return f"{trace_id(run['id']):032x}"


def assert_arrived(phoenix: Phoenix, run: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Phoenix holds the run's trace, span for span (names and IDs)."""
    expected = map_run(run, events)
    spans = phoenix.wait_spans(trace_of(run), len(expected))
    assert sorted(s["name"] for s in spans) == sorted(s.name for s in expected)
    assert sorted(s["span_id"] for s in spans) == sorted(f"{s.span_id:016x}" for s in expected)


@pytest.fixture
def phoenix_back(phoenix: Phoenix) -> Iterator[Phoenix]:
    """Phoenix, running again when the test ends whatever happened (it is shared)."""
    yield phoenix
    if phoenix.proc is None:
        phoenix.start()


def test_a_run_that_ends_arrives_in_phoenix_without_being_asked(
    tmp_path: Path, home: Home, phoenix: Phoenix
) -> None:
    env = choo_env(CHOO_EXPORT_OTLP_ENDPOINT=phoenix.url)  # as export.otlp.endpoint
    started = run_choo("daemon", "start", "--port", "0", cwd=tmp_path, env=env)
    assert started.returncode == 0, started.stderr
    try:
        run, events = record_examples(tmp_path, home)
        wait_for(lambda: export_status()["sent"] >= 1, "the run sent", timeout=120)
        assert export_status()["outbox"] == 0
        assert_arrived(phoenix, run, events)
    finally:
        stop_daemon(home)


def start_daemon(home: Home, endpoint: str) -> subprocess.Popen[bytes]:
    """The daemon, detached, trying a failing backend again at least every 2 s."""
    argv = [sys.executable, "-m", "choo_daemon", "--home", os.fspath(home.root), "--port", "0"]
    argv += ["--export-retry-max", "2", "--export-timeout", "3", "--log-file", str(home.log)]
    home.root.mkdir(mode=0o700, exist_ok=True)
    proc = subprocess.Popen(
        argv,
        env=choo_env(CHOO_EXPORT_OTLP_ENDPOINT=endpoint),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: home.socket.exists() and bool(status().get("web")), "the daemon")
    return proc


def test_runs_wait_in_the_outbox_while_phoenix_is_down_and_arrive_when_it_is_back(
    tmp_path: Path, home: Home, phoenix_back: Phoenix
) -> None:
    phoenix = phoenix_back
    daemon = start_daemon(home, phoenix.url)
    try:
        phoenix.stop()
        first = record_examples(tmp_path / "one", home)
        wait_for(lambda: export_status()["last_error"] is not None, "a failed send")
        export = export_status()
        assert export["outbox"] == 1 and export["sent"] == 0
        assert "connection refused" in export["last_error"]
        assert phoenix.url in export["last_error"]

        second = record_examples(tmp_path / "two", home)
        wait_for(lambda: export_status()["outbox"] == 2, "the outbox to grow to two runs")

        phoenix.start()  # on the same ports, with the same database
        wait_for(lambda: export_status()["outbox"] == 0, "the outbox drained", timeout=120)
        export = export_status()
        assert export["sent"] == 2 and export["last_error"] is None
        assert_arrived(phoenix, *first)
        assert_arrived(phoenix, *second)
    finally:
        stop_daemon(home)
        daemon.wait(30)
