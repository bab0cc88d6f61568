"""The daemon's memory: start-up's objects kept out of the collector's way,
and memory given back to the system after a crowd of viewers has left.

Everything the daemon made while starting (its modules, the web app, about
55,000 objects the collector tracks) lives as long as it does. ``settle``
freezes them (``gc.freeze``) once the daemon is up, so that a full
collection walks only what came later. Each full collection stopped the
event loop for 50 to 70 ms under the live benchmark, one every 6 s or so,
and every event and ack arriving meanwhile waited that long: the run
stream's p99 latency was 107 to 124 ms; with them frozen a full collection
takes 8 to 14 ms and the p99 was 69 to 81 ms in the same hour, alternated
(``scripts/bench/live.py``; the README has later runs).

A thousand browser streams cost the daemon about 30 MB. When they closed,
that memory stayed the daemon's for good: CPython's small-object allocator
frees an arena only once every object in it is gone, and a few objects that
outlive a crowd pin most of its arenas. So the daemon runs on the C
library's allocator (``PYTHONMALLOC=malloc``: ``choo daemon start`` sets it,
and a daemon started otherwise starts itself again with it, first thing in
``__main__``, since the interpreter reads it only at start-up), and once the
streams have fallen well below their peak (``choo_web.crowds``, which says
why it tells twice), ``give_back`` collects the crowd's reference cycles
(trio's cancelled tasks hold many) and asks glibc to return its free pages
(``malloc_trim``). The database process holds no crowds and
keeps CPython's allocator (``dbwire.database_process_env``).

Measured by ``scripts/bench/live.py`` (1,000 idle viewers, then none): +28 MB
kept with pymalloc, with or without a trim; +3 to +7 MB with both changes;
-3 to +4 MB once a crowd's memory is given back a second time.
"""

from __future__ import annotations

import gc
import os

from protocol.malloc import MALLOC_ENV, malloc_trim


def settle() -> None:
    """Once the daemon is up: take what start-up made out of the collector's sight.

    Called by the daemon process itself (``__main__``), never by a daemon
    run inside another program (the tests), whose own objects it would keep
    from the collector for good.
    """
    gc.freeze()


def give_back() -> None:
    """Free what cycles hold, then hand the allocator's free pages to the system."""
    gc.collect()
    trim = malloc_trim()
    if trim is not None and os.environ.get(MALLOC_ENV) == "malloc":
        trim(0)
