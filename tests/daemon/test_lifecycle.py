"""The daemon's life, through the installed ``choo`` executable: start, status,
stop, restart, logs, stale files, a refused database, and signals."""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.lowlevel

from choo.client import DaemonClient, open_daemon_client
from protocol.home import Home, read_pid
from tests.conftest import CHOO, choo

NOW = "2026-01-20T14:30:52.123Z"


# -- helpers ------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def daemon_pids(home: Home) -> set[int]:
    """Processes running ``choo_daemon`` for this CHOO_HOME, found through /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [os.fsdecode(a) for a in argv]
        if "choo_daemon" in args and str(home.root) in args and alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def running_pid(home: Home) -> int:
    pid = read_pid(home.pidfile)
    assert pid is not None, f"no pid in {home.pidfile}"
    assert alive(pid)
    return pid


def start(*args: str) -> subprocess.CompletedProcess[str]:
    result = choo("daemon", "start", "--port", "0", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def stopper(home: Home) -> Iterator[None]:
    """Stop whatever daemon a test left for its CHOO_HOME, and any stray one."""
    yield
    choo("daemon", "stop")
    for pid in daemon_pids(home):
        os.kill(pid, signal.SIGKILL)


# -- status, start, stop, restart ----------------------------------------------


def test_status_without_a_daemon_exits_1_and_says_so(home: Home) -> None:
    result = choo("daemon", "status")
    assert result.returncode == 1
    assert f"no daemon is running for {home.root}" in result.stdout
    assert "choo daemon start" in result.stdout

    result = choo("daemon", "status", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["running"] is False


def test_start_status_restart_stop(home: Home, stopper: None) -> None:
    home.root.chmod(0o750)  # writable by us alone: used as it is, never chmod-ed

    first = start()
    pid = running_pid(home)
    assert "daemon started" in first.stdout and f"pid {pid}" in first.stdout

    # No polling here: start has returned, so status must answer at once.
    status = choo("daemon", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    text = status.stdout
    for needle in (
        "pid",
        str(pid),
        "uptime",
        "socket",
        str(home.socket),
        "database",
        str(home.database),
        "web UI",
        "http://127.0.0.1:",
        "clients",
        "events stored",
    ):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    assert "KiB" in text or " B)" in text  # the database's size

    data = json.loads(choo("daemon", "status", "--json").stdout)
    assert data["running"] is True
    assert data["pid"] == pid
    assert data["socket"] == str(home.socket)
    assert data["database"] == str(home.database)
    assert data["database_bytes"] > 0
    assert data["web"].startswith("http://127.0.0.1:") and not data["web"].endswith(":0")
    assert data["uptime_s"] >= 0
    assert data["clients"] == 0  # the asking client does not count
    assert data["events_stored"] == 0

    assert stat.S_IMODE(home.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o750

    again = start()
    assert "already running" in again.stdout and f"pid {pid}" in again.stdout
    assert daemon_pids(home) == {pid}

    restarted = choo("daemon", "restart", "--port", "0")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    new = running_pid(home)
    assert new != pid
    assert f"pid {new}" in restarted.stdout
    assert not alive(pid)

    stopped = choo("daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"daemon stopped (pid {new})" in stopped.stdout
    assert not home.pidfile.exists()
    assert not home.socket.exists()
    wait_until(lambda: not alive(new), timeout=5, what=f"pid {new} to exit")

    again = choo("daemon", "stop")
    assert again.returncode == 0
    assert "no daemon is running" in again.stdout


def test_two_simultaneous_starts_leave_one_daemon(home: Home, stopper: None) -> None:
    argv = [str(CHOO), "daemon", "start", "--port", "0"]
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out + err

    pid = running_pid(home)
    for out, _ in outputs:
        assert f"pid {pid}" in out
    # The loser may still be on its way out: wait for it, then only one is left.
    wait_until(
        lambda: daemon_pids(home) == {pid},
        timeout=10,
        what=f"only pid {pid} to run for {home.root} (running: {daemon_pids(home)})",
    )


# -- stale files and failures ----------------------------------------------------


def test_start_cleans_up_a_stale_pid_file_and_socket(home: Home, stopper: None) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    home.pidfile.write_text(f"{gone.pid}\n")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(home.socket))
    dead.close()  # the file stays, and nobody listens on it
    assert home.socket.exists()

    start()
    assert running_pid(home) != gone.pid

    log = choo("daemon", "logs", "-n", "50").stdout
    assert f"removed stale pid file {home.pidfile} (pid {gone.pid} is gone)" in log
    assert f"removed stale socket {home.socket}" in log


def test_start_fails_clearly_on_a_database_from_a_newer_choo(home: Home) -> None:
    conn = apsw.Connection(str(home.database))
    conn.pragma("user_version", 99)
    conn.close()
    before = hashlib.sha256(home.database.read_bytes()).hexdigest()

    result = choo("daemon", "start", "--port", "0")
    assert result.returncode == 2  # cannot be started: not 1, the code of a failed run
    err = " ".join(result.stderr.split())  # rich may wrap long lines
    assert "could not start the daemon" in err
    assert "exited with code 1" in err
    assert "last lines of" in err
    assert "schema version 99" in err and "newer than this choo understands" in err
    # A clear line, not a traceback of exception groups.
    assert "cannot open the history database" in err
    assert "Traceback" not in home.log.read_text()

    assert hashlib.sha256(home.database.read_bytes()).hexdigest() == before
    assert not home.pidfile.exists()
    assert not home.socket.exists()
    assert daemon_pids(home) == set()


# -- signals -------------------------------------------------------------------


def _stored_seqs(path: Path, run: str) -> tuple[Any, ...]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        [(count, distinct, top)] = conn.execute(
            "SELECT count(*), count(DISTINCT seq), max(seq) FROM events WHERE run_id = ?", (run,)
        ).fetchall()
    finally:
        conn.close()
    return count, distinct, top


def _send(client: DaemonClient, run: str, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        client.send_event(
            run, seq, "task.output", time=NOW, unit="u1", task=1, payload={"line": f"line {seq}"}
        )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_the_daemon_after_acking_what_it_read(
    home: Home, signum: signal.Signals
) -> None:
    run = "run_20260120_143052_sig1"
    # --foreground execs the daemon, so this child is the daemon and we get its exit code.
    proc = await trio.lowlevel.open_process(
        [str(CHOO), "daemon", "start", "--foreground", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with open_daemon_client(home, connect_timeout=20) as client:
            assert (await client.status())["pid"] == proc.pid
            await client.start_run(
                run, repo_path="/repo", started_at=NOW, parallelism=1, total_units=1
            )
            _send(client, run, 1, 5000)
            # The reply to a request comes after the daemon has read every frame sent
            # before it: these 5000 events are now the daemon's to store and ack.
            await client.status()
            _send(client, run, 5001, 10_000)  # and these are on their way
            await trio.lowlevel.checkpoint()  # the sender starts writing them
            os.kill(proc.pid, signum)
            with trio.fail_after(20):
                code = await proc.wait()
                # The connection ends after the last ack: wait until the client saw it.
                while client.reconnects < 1:
                    await trio.sleep(0.01)
            acked = 10_000 - client.unacked(run)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert code == 0
    assert not home.socket.exists()
    assert not home.pidfile.exists()
    count, distinct, top = _stored_seqs(home.database, run)
    # Everything read before the signal is stored and acked; what is stored is a
    # contiguous prefix, and nothing acked is missing from it.
    assert acked >= 5000
    assert count == distinct == top
    assert top >= acked
    log = home.log.read_text()
    assert f"received {signum.name}" in log
    assert "daemon stopped" in log


# -- logs ----------------------------------------------------------------------


def test_logs_prints_the_last_lines(home: Home) -> None:
    home.log.write_text("".join(f"line {n}\n" for n in range(1, 11)))
    result = choo("daemon", "logs", "-n", "3")
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["line 8", "line 9", "line 10"]


def test_logs_follow_prints_lines_appended_later(home: Home) -> None:
    home.log.write_text("old line\n")
    # As in a user's pipe (`choo daemon logs -f | grep ...`): stdout block-buffered.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [str(CHOO), "daemon", "logs", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert _readline(proc, timeout=20) == "old line\n"
        with open(home.log, "a") as log:
            log.write("a new line\n")
        assert _readline(proc, timeout=10) == "a new line\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of ``proc``'s stdout, failing instead of blocking past ``timeout``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output from {proc.args!r} within {timeout} s")
    return proc.stdout.readline()
