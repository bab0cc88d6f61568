"""The web API's read side: history reads in worker threads, off the trio loop.

A small pool of read-only connections, opened on first use, each used by
one thread at a time; a CapacityLimiter as large as the pool makes sure no
more reads run at once than there are connections. Reads never block the
writer (WAL) nor the loop. Store errors come out as the web API's errors,
with the store's codes.

A ``run`` argument is a run id or a unique prefix of one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import apsw
import trio

from choo_daemon import store
from choo_web.errors import NotFound, Unavailable, from_code

T = TypeVar("T")

POOL_SIZE = 4


class Reader:
    def __init__(self, path: Path, *, size: int = POOL_SIZE) -> None:
        self.path = path
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[apsw.Connection] = []
        self._opened = 0
        self._closed = False

    async def list_repos(self) -> list[store.Repo]:
        return await self._read(store.list_repos)

    async def list_runs(
        self,
        *,
        repo: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> store.RunPage:
        return await self._read(
            lambda conn: store.list_runs(conn, repo=repo, status=status, limit=limit, cursor=cursor)
        )

    async def resolve(self, run: str) -> str:
        return await self._read(lambda conn: store.resolve_run_id(conn, run))

    async def get_run(self, run: str) -> store.RunDetail:
        def read(conn: apsw.Connection) -> store.RunDetail:
            run_id = store.resolve_run_id(conn, run)
            detail = store.get_run(conn, run_id)
            if detail is None:  # deleted between the two reads
                raise store.UnknownRun(run_id)
            return detail

        return await self._read(read)

    async def events_page(
        self,
        run: str,
        *,
        type: str | None = None,
        unit: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> store.EventPage:
        def read(conn: apsw.Connection) -> store.EventPage:
            run_id = store.resolve_run_id(conn, run)
            return store.events_page(conn, run_id, type=type, unit=unit, after=after, limit=limit)

        return await self._read(read)

    async def get_graph(self, run: str) -> store.Graph:
        def read(conn: apsw.Connection) -> store.Graph:
            run_id = store.resolve_run_id(conn, run)
            graph = store.get_graph(conn, run_id)
            if graph is None:
                raise NotFound(
                    "no_graph",
                    f"run {run_id!r} has no dependency graph stored (it never got as far "
                    "as planning); its events are at .../events",
                )
            return graph

        return await self._read(read)

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

    async def _read(self, fn: Callable[[apsw.Connection], T]) -> T:
        async with self._limiter:
            if self._closed:
                raise Unavailable("shutting_down", "the daemon is shutting down; try again later")
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                return await trio.to_thread.run_sync(fn, conn)
            except store.StoreError as exc:
                raise from_code(exc.code, exc.message) from None
            finally:
                # The thread is done with it: run_sync waits for it even when cancelled.
                if self._closed:
                    conn.close()
                    self._opened -= 1
                else:
                    self._idle.append(conn)

    async def _open(self) -> apsw.Connection:
        try:
            conn = await trio.to_thread.run_sync(store.open_read_connection, self.path)
        except store.StoreError as exc:
            raise Unavailable("database_unavailable", exc.message) from None
        self._opened += 1
        return conn
