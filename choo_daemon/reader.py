"""The web API's read side: history reads in worker threads, off the trio loop.

``reader.<name>(...)`` runs the store's served read ``name``
(``store.SERVED``, marked ``@served`` in ``store/reads.py``) as
``fn(conn, ...)`` in a worker thread: one generic dispatcher, so a new
read needs nothing here. Store errors pass through as they are: they are
``protocol.errors.Refusal``s, which the web side maps to HTTP statuses.

A small pool of read-only connections, opened on first use, each used by
one thread at a time; a CapacityLimiter as large as the pool makes sure no
more reads run at once than there are connections. Reads never block the
writer (WAL) nor the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import apsw
import trio

from choo_daemon import store
from protocol.errors import UNAVAILABLE, Refusal

T = TypeVar("T")

POOL_SIZE = 4


class Reader:
    def __init__(self, path: Path, *, size: int = POOL_SIZE) -> None:
        self.path = path
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[apsw.Connection] = []
        self._opened = 0
        self._closed = False

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The served read ``name``, to await with its arguments after ``conn``."""
        try:
            fn = store.SERVED[name]
        except KeyError:
            raise AttributeError(f"the history serves no read {name!r}") from None
        return partial(self.read, fn)

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` on a pooled read connection, in a worker thread."""
        async with self._limiter:
            if self._closed:
                raise Refusal(
                    "the daemon is shutting down; try again later",
                    code="shutting_down",
                    kind=UNAVAILABLE,
                )
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                return await trio.to_thread.run_sync(partial(fn, conn, *args, **kwargs))
            finally:
                # The thread is done with it: run_sync waits for it even when cancelled.
                if self._closed:
                    conn.close()
                    self._opened -= 1
                else:
                    self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections; those in use close when their read ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
            self._opened -= 1

    def statistics(self) -> dict[str, int]:
        return {
            "connections_open": self._opened,
            "connections_idle": len(self._idle),
            "reads_waiting": self._limiter.statistics().tasks_waiting,
        }

    async def _open(self) -> apsw.Connection:
        try:
            conn = await trio.to_thread.run_sync(store.open_read_connection, self.path)
        except store.StoreError as exc:
            raise Refusal(exc.message, code="database_unavailable", kind=UNAVAILABLE) from None
        self._opened += 1
        return conn
