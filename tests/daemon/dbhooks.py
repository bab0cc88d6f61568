"""Faults for the database process, set up through ``Writer.run_in_writer``.

They run in the database process, which finds them by module name: the tests
run from the project root, which is on that process's path as its working
folder.
"""

from __future__ import annotations

import apsw


def limit_pages(conn: apsw.Connection, extra: int | None) -> int:
    """Let the file grow by ``extra`` pages at most (None: no limit); SQLite
    then fails writes with SQLITE_FULL, as on a full disk."""
    pages: int = conn.pragma("page_count")
    limit: int = conn.pragma("max_page_count", 4294967294 if extra is None else pages + extra)
    return limit


def refuse_events_of(conn: apsw.Connection, run: str) -> None:
    """Make every insert of ``run``'s events fail, as a store that refuses a batch."""
    quoted = "'" + run.replace("'", "''") + "'"  # a trigger takes no parameters
    conn.execute(
        f"CREATE TEMP TRIGGER refuse BEFORE INSERT ON events WHEN NEW.run_id = {quoted}"
        " BEGIN SELECT RAISE(ABORT, 'something no retry will fix'); END"
    )
