"""Shared fixtures: a private, short CHOO_HOME for every test, and daemons.

Unix socket paths are limited to ~100 bytes, so homes live directly under
/tmp rather than in pytest's long tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from choo_daemon.daemon import Daemon, DaemonOptions
from protocol.home import Home, is_locked

CHOO = Path(sys.executable).with_name("choo")


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    root = Path(tempfile.mkdtemp(prefix="ch", dir="/tmp"))
    monkeypatch.setenv("CHOO_HOME", str(root))
    yield Home(root)
    _kill_leftover_daemon(root)
    shutil.rmtree(root, ignore_errors=True)


def _kill_leftover_daemon(root: Path) -> None:
    pidfile = root / "daemon.pid"
    if not is_locked(pidfile):
        # No daemon holds it: the pid inside is a dead one's, which on a busy
        # machine may be some other process's by now.
        return
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


@pytest.fixture
async def daemon(home: Home, nursery: trio.Nursery) -> AsyncIterator[Daemon]:
    """A daemon running inside the test's trio loop (web on a free port)."""
    home.root.mkdir(mode=0o700, exist_ok=True)
    # No retention: test data is dated in the past.
    d = Daemon(DaemonOptions(home=home, port=0, retention_days=None))
    await nursery.start(d.serve)
    yield d
    d.request_shutdown()


def choo(*args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the installed ``choo`` executable with the test's environment."""
    return subprocess.run(
        [str(CHOO), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def daemon_process(home: Home) -> Iterator[Home]:
    """A detached daemon started with ``choo daemon start --port 0``."""
    result = choo("daemon", "start", "--port", "0")
    assert result.returncode == 0, result.stderr
    yield home
    choo("daemon", "stop")


# -- figures a test reports, shown at the end of the run ---------------------------
# Through the reports' user_properties, so they reach the terminal with
# pytest-xdist too (a worker's own output is never shown).

Summary = Callable[[str], None]


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> Summary:
    """``summary(line)``: show ``line`` in the run's closing summary."""
    return lambda line: request.node.user_properties.append(("summary", line))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines: dict[tuple[str, str], None] = {}  # each report of a test repeats its properties
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "summary":
                    lines[(report.nodeid, str(value))] = None
    if lines:
        terminalreporter.section("figures")
        for nodeid, line in lines:
            terminalreporter.write_line(f"{nodeid}: {line}")
