"""One run per plan: an OS lock on the tasks folder, held by ``choo run`` and ``choo resume``.

The lock is a file in CHOO_HOME, ``locks/<sha1 of the tasks folder>.lock``,
held with ``flock`` for the whole run. The OS releases it when the holder
dies, however it dies, so a file left behind by a killed run (with a pid
that is gone) blocks nobody: the next run locks it and writes its own
record. The record inside (JSON: ``run_id``, ``pid``, ``started_at``,
``tasks_dir``) is only informative: it is what a second run's refusal says.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from choo.errors import ChooError
from protocol.home import Home, HomeError, lock_exclusive, prepare_home
from protocol.times import parse_iso_utc, utc_now

EXIT_LOCKED = 2
OPEN_TRIES = 5  # a lock folder removed under us again and again means something else
RECORD_WAIT = 1.0  # seconds a refused run waits for the holder to write its record


class PlanLocked(ChooError):
    """Another live process holds the plan's lock; the message names it and what to do."""

    exit_code = EXIT_LOCKED

    def __init__(self, tasks_dir: Path, holder: dict[str, Any] | None) -> None:
        self.tasks_dir = tasks_dir
        self.holder = holder
        super().__init__(_refusal(tasks_dir, holder))


def lock_path(home: Home, tasks_dir: Path) -> Path:
    """The lock file of the plan in ``tasks_dir`` (one per resolved folder)."""
    digest = hashlib.sha1(str(tasks_dir.resolve()).encode()).hexdigest()[:16]
    return home.root / "locks" / f"{digest}.lock"


class PlanLock:
    """The lock a run holds; ``update`` rewrites the record when the run ID changes."""

    def __init__(self, fd: int, path: Path, tasks_dir: Path, run_id: str | None) -> None:
        self._fd = fd
        self.path = path
        self.tasks_dir = tasks_dir
        self.started_at = utc_now()
        self.run_id = run_id
        self._write()

    def update(self, run_id: str) -> None:
        if run_id != self.run_id:
            self.run_id = run_id
            self._write()

    def _write(self) -> None:
        record = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "tasks_dir": str(self.tasks_dir.resolve()),
        }
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, orjson.dumps(record) + b"\n", 0)


@contextlib.contextmanager
def hold_plan(home: Home, tasks_dir: Path, run_id: str | None) -> Iterator[PlanLock]:
    """Hold the plan's lock for the block; raises ``PlanLocked`` while another run holds it.

    ``run_id`` may be None while the run's ID is not chosen yet (``update`` it then).
    CHOO_HOME is created if it is missing (``HomeError`` if it cannot be used).
    """
    prepare_home(home)
    path = lock_path(home, tasks_dir)
    fd = _lock(path, tasks_dir)
    try:
        yield PlanLock(fd, path, tasks_dir, run_id)
    finally:
        # Unlink before unlocking, so that no newcomer locks a file about to
        # disappear while another locks its replacement.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
        # The folder goes too when no other lock is in it: a run leaves
        # CHOO_HOME as it found it.
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def read_holder(path: Path) -> dict[str, Any] | None:
    """The record in a lock file, or None when it is missing, empty or not ours."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _open(path: Path) -> int:
    """Open (or create) the lock file, and its folder, mode 0700, if it is missing."""
    error: OSError | None = None
    for _ in range(OPEN_TRIES):
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError as exc:
            error = exc  # a run that ended removed the folder between the two: again
        except OSError as exc:
            error = exc
            break
    reason = error.strerror if error else "unknown error"
    raise HomeError(
        f"cannot create the plan's lock {path}: {reason}; set CHOO_HOME to a folder you can write"
    )


def _lock(path: Path, tasks_dir: Path) -> int:
    fd = lock_exclusive(path, _open)
    if fd is None:
        raise PlanLocked(tasks_dir, _wait_for_record(path))
    return fd


def _wait_for_record(path: Path) -> dict[str, Any] | None:
    """The holder's record; it writes it just after it locks, so give it a moment."""
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        holder = read_holder(path)
        if holder is not None or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)


def _refusal(tasks_dir: Path, holder: dict[str, Any] | None) -> str:
    if holder is None:
        return (
            f"plan {tasks_dir} is being run by another choo process; wait for it to end "
            "or stop it (Ctrl-C in its terminal)"
        )
    run_id = holder.get("run_id") or "a run that is starting"
    pid = holder.get("pid", "?")
    return (
        f"plan {tasks_dir} is being run by {run_id} (pid {pid}, started "
        f"{_when(holder.get('started_at'))}); wait for it to end or stop it "
        f"(Ctrl-C in its terminal, or kill {pid})"
    )


def _when(started_at: object) -> str:
    """The start time in the reader's local time, to the second."""
    try:
        moment = parse_iso_utc(str(started_at))
    except ValueError:
        return str(started_at)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
