"""Memory given back to the system after a crowd of viewers has left.

A thousand browser streams cost the daemon about 30 MB. When they closed,
that memory stayed the daemon's for good: CPython's small-object allocator
frees an arena only once every object in it is gone, and a few objects that
outlive a crowd pin most of its arenas. So the daemon runs on the C
library's allocator (``PYTHONMALLOC=malloc``: ``choo daemon start`` sets it,
and a daemon started otherwise starts itself again with it, first thing in
``__main__``, since the interpreter reads it only at start-up), and once the
streams have fallen well below their peak (``choo_web.crowds``), ``give_back`` collects the crowd's
reference cycles (trio's cancelled tasks hold many) and asks glibc to return
its free pages (``malloc_trim``). The database process holds no crowds and
keeps CPython's allocator (``dbwire.database_process_env``).

Measured by ``scripts/bench/live.py`` (1,000 idle viewers, then none): +28 MB
kept with pymalloc, with or without a trim; +3 to +7 MB with both changes.
"""

from __future__ import annotations

import gc
import os

from protocol.malloc import MALLOC_ENV, malloc_trim


def give_back() -> None:
    """Free what cycles hold, then hand the allocator's free pages to the system."""
    gc.collect()
    trim = malloc_trim()
    if trim is not None and os.environ.get(MALLOC_ENV) == "malloc":
        trim(0)
