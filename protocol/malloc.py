"""The daemon's allocator: the C library's, so that memory can go back to the
system (``choo_daemon.memory`` says why). Here because both the daemon and the
``choo`` command that starts it set it up."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Mapping
from functools import cache

MALLOC_ENV = "PYTHONMALLOC"
SYSTEM_MALLOC_ENV = "CHOO_DAEMON_SYSTEM_MALLOC"  # set with it, for the daemon alone


@cache
def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None where there is none (not Linux, or musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The symbols already loaded, libc's among them: no library search
        # (ctypes.util.find_library runs ldconfig).
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def wants_system_malloc(env: Mapping[str, str]) -> bool:
    """Whether a daemon started with ``env`` should be put on the C allocator:
    not if the user chose an allocator, nor without ``malloc_trim``."""
    return not env.get(MALLOC_ENV) and malloc_trim() is not None


def with_system_malloc(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for the daemon, on the C allocator if it ``wants_system_malloc``."""
    if not wants_system_malloc(env):
        return dict(env)
    return {**env, MALLOC_ENV: "malloc", SYSTEM_MALLOC_ENV: "1"}
