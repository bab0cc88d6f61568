"""Memory given back to the system after a crowd of viewers has left.

A thousand browser streams cost the daemon about 30 MB. When they closed,
that memory stayed the daemon's for good: CPython's small-object allocator
frees an arena only once every object in it is gone, and a few objects that
outlive a crowd pin most of its arenas. So the daemon runs on the C
library's allocator (``PYTHONMALLOC=malloc``: ``system_malloc_argv`` makes
the daemon start itself again with it, since the interpreter reads it only
at start-up), and once the number of open streams has fallen well below its
peak (``choo_web.crowds``), ``give_back`` collects the crowd's reference cycles (trio's cancelled
tasks hold many) and asks glibc to return its free pages (``malloc_trim``).

Measured by ``scripts/bench/live.py`` (1,000 idle viewers, then none): +28 MB
kept with pymalloc, with or without a trim; +4 MB with both changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from collections.abc import Callable
from functools import cache

MALLOC_ENV = "PYTHONMALLOC"
SYSTEM_MALLOC_ENV = "CHOO_DAEMON_SYSTEM_MALLOC"  # set with it, for the daemon alone


def system_malloc_argv() -> list[str] | None:
    """The command line to start this process again on the C allocator, or
    None if it runs on it already, or should not (the user chose an allocator,
    or the C library has no ``malloc_trim``)."""
    if os.environ.get(MALLOC_ENV) or _malloc_trim() is None:
        return None
    return [sys.executable, *sys.orig_argv[1:]]


def exec_with_system_malloc(argv: list[str]) -> None:
    os.execve(argv[0], argv, {**os.environ, MALLOC_ENV: "malloc", SYSTEM_MALLOC_ENV: "1"})


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl has no malloc_trim)
    return trim


def give_back() -> None:
    """Free what cycles hold, then hand the allocator's free pages to the system."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None and os.environ.get(MALLOC_ENV) == "malloc":
        trim(0)
