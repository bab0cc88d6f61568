"""Starting, stopping and asking the daemon, for the CLI and the orchestrator.

The daemon is a separate process (``python -m choo_daemon``). ``start``
detaches it into its own session with its output appended to the log, then
waits until it answers a ``status`` request on its socket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from choo.client import DaemonBusy, DaemonError, DaemonUnavailable, open_daemon_client
from choo.config import Config, env_var
from choo.errors import ChooError
from protocol.backoff import delays
from protocol.home import (
    Home,
    HomeError,
    ensure_token,
    is_locked,
    prepare_home,
    read_pid,
    read_token,
    rotate_token,
)
from protocol.malloc import with_system_malloc

MAX_RESPAWNS = 3
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
STALE_SOCKET_RETRY = 0.2
POLL_FIRST, POLL_MAX = 0.02, 0.1  # seconds between polls of a starting daemon
EXIT_ALREADY_RUNNING = 3
# Where the daemon finds its export settings: the variables of the config keys.
EXPORT_ENDPOINT_ENV = env_var("export.otlp.endpoint")
EXPORT_HEADERS_ENV = env_var("export.otlp.headers")


class DaemonControlError(ChooError):
    """A start or stop that did not happen; the message says why and what to do."""


@dataclass(frozen=True)
class ExportSettings:
    """export.otlp.endpoint (None: no continuous export) and export.otlp.headers."""

    endpoint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DaemonSettings:
    """What a daemon is started with (None: the daemon's own default)."""

    port: int | None = None
    host: str | None = None
    retention_days: int | None = None  # 0 keeps every run
    set_aside_corrupt: bool = False  # a damaged history.db is moved aside, not refused
    # Continuous OTLP export (export.otlp.*); None: as the environment has it.
    export: ExportSettings | None = None

    @classmethod
    def from_config(cls, config: Config) -> DaemonSettings:
        return cls(
            port=config["daemon.port"],
            host=config["daemon.host"],
            retention_days=config["history.retention_days"],
            export=ExportSettings(
                config["export.otlp.endpoint"], dict(config["export.otlp.headers"] or {})
            ),
        )


def daemon_env(settings: DaemonSettings | None = None) -> dict[str, str]:
    """The daemon's environment: ours, on the C allocator, with the export settings in it.

    They go there and not on the command line because a header may hold an
    API key: a process's arguments are readable by every user of the
    machine, its environment by its own user only. The daemon reads them at
    start (``choo_daemon.outbox.target_from_env``).
    """
    env = with_system_malloc(os.environ)  # protocol/malloc.py: why
    export = settings.export if settings is not None else None
    if export is None:
        return env
    for var in (EXPORT_ENDPOINT_ENV, EXPORT_HEADERS_ENV):
        env.pop(var, None)
    if export.endpoint:
        env[EXPORT_ENDPOINT_ENV] = export.endpoint
        env[EXPORT_HEADERS_ENV] = json.dumps(export.headers)
    return env


@dataclass(frozen=True)
class StartResult:
    status: dict[str, Any]
    already_running: bool


@dataclass(frozen=True)
class Probe:
    """What answers on the socket: a daemon's status, a busy daemon, or nobody."""

    status: dict[str, Any] | None = None
    busy: str | None = None  # a daemon runs but has no free connection: its words
    pid: int | None = None  # of the busy daemon, from the pid file


def probe(home: Home, timeout: float = 2.0) -> Probe:
    """Ask the daemon for its status, telling "busy" apart from "not running"."""
    if not home.socket.exists():
        return Probe()
    return trio.run(_probe, home, timeout)


def query_status(home: Home, timeout: float = 2.0) -> dict[str, Any] | None:
    """The daemon's status, or None when no daemon answers (or it is busy)."""
    return probe(home, timeout).status


async def _probe(home: Home, timeout: float) -> Probe:
    try:
        with trio.fail_after(timeout):
            # A socket file that refuses connections is a dead daemon's: retrying
            # for the whole timeout only delays `status` and `start` after a crash.
            connect = min(timeout, STALE_SOCKET_RETRY)
            async with open_daemon_client(home, name="choo-ctl", connect_timeout=connect) as c:
                return Probe(status=await c.status())
    except DaemonBusy as exc:
        return Probe(busy=exc.message, pid=read_pid(home.pidfile))
    except (DaemonUnavailable, DaemonError, trio.TooSlowError):
        return Probe()


def port_conflict(status: dict[str, Any], wanted: int | None) -> int | None:
    """The port a running daemon's web UI is on, when it is not ``wanted``.

    None when it is: ``wanted`` None (no --port flag) or 0 (any port) is
    satisfied by every port, and so is a daemon whose web UI is not up.
    """
    web = status.get("web")
    if not wanted or not web:
        return None
    port = urlsplit(str(web)).port
    return port if port is not None and port != wanted else None


def login_url(home: Home, web_url: str, page: str = "") -> str:
    """A URL of the web UI that logs the browser in: ``web_url`` with the token.

    ``page`` is a fragment of the UI (``#/history?run=...``). Without a
    token file (none made yet), the bare URL.
    """
    token = read_token(home)
    base = web_url.rstrip("/")
    return f"{base}/?token={token}{page}" if token else f"{base}/{page}"


def web_token(home: Home, *, rotate: bool = False) -> str:
    """The web token (made if there is none); a new one with ``rotate``, which
    a running daemon takes at once, refusing the old one."""
    try:
        prepare_home(home)
        return rotate_token(home) if rotate else ensure_token(home)
    except HomeError as exc:
        raise DaemonControlError(str(exc)) from None
    except OSError as exc:
        raise DaemonControlError(
            f"cannot write the web token {home.token}: {exc.strerror}; check CHOO_HOME"
        ) from None


def daemon_command(
    home: Home, settings: DaemonSettings | None = None, *, log_file: bool = False
) -> list[str]:
    settings = settings or DaemonSettings()
    argv = [sys.executable, "-m", "choo_daemon", "--home", os.fspath(home.root)]
    if settings.host is not None:
        argv += ["--host", settings.host]
    if settings.port is not None:
        argv += ["--port", str(settings.port)]
    if settings.retention_days is not None:
        argv += ["--retention-days", str(settings.retention_days)]
    if settings.set_aside_corrupt:
        argv.append("--set-aside-corrupt")
    if log_file:
        argv += ["--log-file", os.fspath(home.log)]
    return argv


def start(
    home: Home, settings: DaemonSettings | None = None, *, timeout: float = START_TIMEOUT
) -> StartResult:
    """Start a detached daemon unless one answers already; wait until it does.

    "Answers" means its socket takes a status request and its web server is
    up (the daemon opens the socket first, the web server a moment later).
    """
    problem = home.socket_path_problem()
    if problem:
        raise DaemonControlError(problem)
    try:
        prepare_home(home)
    except HomeError as exc:
        raise DaemonControlError(str(exc)) from None
    found = probe(home)
    if found.busy is not None:
        who = f"pid {found.pid}" if found.pid is not None else "its pid file names none"
        raise DaemonControlError(
            f"a daemon is already running ({who}) but busy: {found.busy}; try again in a moment"
        )
    status = found.status
    if status is not None:
        return StartResult(wait_for_web(home, status, timeout), already_running=True)
    log_offset = home.log.stat().st_size if home.log.exists() else 0
    process = _spawn(home, settings)
    respawns = 0
    deadline = time.monotonic() + timeout
    seen: set[tuple[int, bool]] = set()  # (pid holding CHOO_HOME, socket answers)
    holder: int | None = None
    answers = False
    pauses = delays(POLL_FIRST, POLL_MAX)
    while time.monotonic() < deadline:
        code = process.poll()
        status = query_status(home, timeout=1.0)
        if status is not None and status.get("web"):
            return StartResult(status, already_running=code == EXIT_ALREADY_RUNNING)
        locked = is_locked(home.pidfile)
        holder = read_pid(home.pidfile) if locked else None  # None too until it writes it
        answers = status is not None
        if holder is not None and (holder, answers) not in seen:
            # Progress: a daemon took CHOO_HOME (a new one, if the last died
            # starting) or its socket began to answer. On a busy machine each
            # step can be slow; only one that takes the whole timeout is stuck.
            seen.add((holder, answers))
            deadline = time.monotonic() + timeout
        if code is not None and not locked:
            if code == EXIT_ALREADY_RUNNING:
                # Ours lost the race to another daemon, which is gone without
                # answering (killed while starting, its starter gone too):
                # nobody holds CHOO_HOME, so run the race again.
                process = _spawn(home, settings)
                continue
            if code < 0 and respawns < MAX_RESPAWNS:
                # Killed by a signal before it answered (a crash, an OOM kill):
                # nobody else holds CHOO_HOME, so try again.
                respawns += 1
                process = _spawn(home, settings)
                continue
        if code is not None and code > 0 and code != EXIT_ALREADY_RUNNING:
            raise DaemonControlError(
                f"the daemon exited with code {code} while starting.\n"
                + _log_excerpt(home.log, log_offset)
            )
        # Back off a little: every poll is a connection the starting daemon serves.
        time.sleep(next(pauses))
    stuck = (
        f"no daemon took {home.pidfile}"
        if holder is None
        else f"the daemon (pid {holder}) answers on its socket but its web server is not up"
        if answers
        else f"the daemon (pid {holder}) did not answer on {home.socket}"
    )
    raise DaemonControlError(
        f"{stuck} within {timeout:g} s.\n" + _log_excerpt(home.log, log_offset)
    )


# Daemons this process started. They outlive us, detached; holding on to
# them lets us reap the ones that exit before we do (no zombies, and no
# "subprocess is still running" warning when a Popen is dropped).
_DETACHED: list[subprocess.Popen[bytes]] = []


def _spawn(home: Home, settings: DaemonSettings | None) -> subprocess.Popen[bytes]:
    _DETACHED[:] = [p for p in _DETACHED if p.poll() is None]
    # The log is the user's alone (0600), as the daemon's other files are.
    with open(os.open(home.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        process = subprocess.Popen(
            daemon_command(home, settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env=daemon_env(settings),
        )
    _DETACHED.append(process)
    return process


def wait_for_web(
    home: Home, status: dict[str, Any], timeout: float = START_TIMEOUT
) -> dict[str, Any]:
    """The status of a daemon that answers, once it shows its web URL (the
    daemon opens its socket before its web server); as is after ``timeout``."""
    deadline = time.monotonic() + timeout
    pauses = delays(POLL_FIRST, POLL_MAX)
    while not status.get("web") and time.monotonic() < deadline:
        time.sleep(next(pauses))
        status = query_status(home) or status
    return status


def stop(home: Home, *, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop the daemon gracefully; returns its pid, or None if none was running."""
    pid = read_pid(home.pidfile)
    if not is_locked(home.pidfile):
        return None
    if not trio.run(_ask_shutdown, home) and pid is not None:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_locked(home.pidfile):
        if time.monotonic() > deadline:
            raise DaemonControlError(
                f"the daemon (pid {pid}) did not stop within {timeout:g} s; "
                f"see `choo daemon logs`, or end it with `kill -9 {pid}`"
            )
        time.sleep(0.02)
    return pid


async def _ask_shutdown(home: Home) -> bool:
    try:
        with trio.fail_after(5):
            async with open_daemon_client(home, name="choo-ctl", connect_timeout=2) as client:
                await client.shutdown()
                return True
    except (DaemonUnavailable, DaemonError, trio.TooSlowError):
        return False


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file ([] when it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
    except FileNotFoundError:
        return []


def _log_excerpt(path: Path, offset: int, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    last = text.strip().splitlines()[-lines:]
    if not last:
        return f"(the log {path} says nothing)"
    return f"last lines of {path}:\n" + "\n".join("  " + line for line in last)
