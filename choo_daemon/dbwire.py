"""What the daemon and its database process share: how the process is
started, the memory files, the headers (see ``choo_daemon.dbproc``). What
they say to each other is in ``choo_daemon.dbmsg``.

Only the standard library: the daemon starts the process with this before
it imports anything else, so that the two load side by side.
"""

from __future__ import annotations

import mmap
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.malloc import MALLOC_ENV, SYSTEM_MALLOC_ENV

# A request's length and memory file (-1: it follows in the socket); an answer's length.
REQUEST_HEADER = struct.Struct(">Ii")
ANSWER_HEADER = struct.Struct(">I")
SLOTS = 2  # memory files: batches in flight at once


class SharedFile:
    """A memory file that both processes map; the daemon writes, the process reads."""

    INITIAL_SIZE = 4 << 20  # pages are only taken when written

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map: mmap.mmap | None = None

    @classmethod
    def create(cls) -> SharedFile:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("choo-dbproc")
        else:  # no memfd (macOS): a file with no name, much the same
            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
        os.ftruncate(fd, cls.INITIAL_SIZE)
        return cls(fd)

    def dump(self, value: object) -> int:
        """Pickle ``value`` straight into the file (no copy in between); its size."""
        while True:
            mapped = self._mapped(0)
            mapped.seek(0)
            try:
                pickle.dump(value, mapped, protocol=pickle.HIGHEST_PROTOCOL)
            except ValueError:  # it did not fit: twice the room, and again
                os.ftruncate(self.fd, 2 * len(mapped))
                self._mapped(2 * len(mapped))
                continue
            return mapped.tell()

    def load(self, size: int) -> Any:
        """Unpickle the first ``size`` bytes, read in place."""
        with memoryview(self._mapped(size))[:size] as view:
            return pickle.loads(view)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        os.close(self.fd)

    def _mapped(self, size: int) -> mmap.mmap:
        if self._map is None or len(self._map) < size:
            if self._map is not None:
                self._map.close()
            self._map = mmap.mmap(self.fd, os.fstat(self.fd).st_size)
        return self._map


@dataclass(frozen=True)
class Started:
    """A database process just started, and the daemon's ends of its links."""

    proc: subprocess.Popen[bytes]
    sock: socket.socket
    shared: list[SharedFile]


def database_process_env() -> dict[str, str]:
    """Ours, on CPython's own allocator if the daemon took the C one only for
    itself (``choo_daemon.memory``): this process holds no crowds."""
    env = dict(os.environ)
    if env.pop(SYSTEM_MALLOC_ENV, None) is not None:
        env.pop(MALLOC_ENV, None)
    return env


def start_process(database: Path) -> Started:
    """Start the database process; it opens nothing until asked to."""
    ours, theirs = socket.socketpair()
    shared = [SharedFile.create() for _ in range(SLOTS)]
    fds = (theirs.fileno(), *(f.fd for f in shared))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "choo_daemon.dbproc", *map(str, fds), str(database)],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            env=database_process_env(),
        )
    except BaseException:
        ours.close()
        for f in shared:
            f.close()
        raise
    finally:
        theirs.close()
    return Started(proc, ours, shared)
