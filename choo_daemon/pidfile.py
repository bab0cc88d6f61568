"""The pid file: one daemon per CHOO_HOME, held with an OS lock.

The lock (``flock``) lives as long as the process, so a crashed daemon
releases it by dying; the pid written inside is only informative. A pid
file that can be locked is therefore stale and is taken over, with a log
line. Reading it from outside (``read_pid``, ``is_locked``) is the clients'
business too, so that lives in ``protocol.home``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from protocol.home import lock_exclusive, read_pid

log = logging.getLogger("choo.daemon")


class AlreadyRunning(Exception):
    """Another daemon holds the pid file's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"a daemon is already running for this CHOO_HOME ({who}, {path})")
        self.pid = pid


@contextlib.contextmanager
def hold_pidfile(path: Path) -> Iterator[None]:
    """Lock and write the pid file for the life of the block, then remove it.

    Raises AlreadyRunning when another live process holds it.
    """
    fd = _lock(path)
    try:
        stale = read_pid(path)
        if stale is not None and stale != os.getpid():
            log.info("removed stale pid file %s (pid %d is gone)", path, stale)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        yield
    finally:
        # Unlink before unlocking, so no newcomer can lock a file that is
        # about to disappear and believe it owns the CHOO_HOME.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _lock(path: Path) -> int:
    fd = lock_exclusive(path, lambda p: os.open(p, os.O_RDWR | os.O_CREAT, 0o600))
    if fd is None:
        raise AlreadyRunning(path, read_pid(path))
    return fd
