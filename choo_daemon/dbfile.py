"""The history file itself, for the database process: opening it (a damaged
file is named as such), setting a damaged one aside, and telling whether the
file at the path is still the one opened.

SQLite writes to the file it opened, whatever happens to its name: after
``rm history.db`` (or a backup moved into its place) every commit still
succeeds, into a file that nobody will ever open again. So the database
process compares the path's (st_dev, st_ino) with the file it opened after
each commit, and acks nothing once they differ.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import apsw

from choo_daemon import store

# What SQLite says of a file that is not, or no longer, a database.
_CORRUPT = (apsw.CorruptError, apsw.NotADBError)
# The files of one WAL database; the -wal first, so that no crash half way
# leaves a -wal beside a new, empty history.db (SQLite would replay it there).
_SIDE_FILES = ("-wal", "-shm", "")

FileId = tuple[int, int]  # (st_dev, st_ino)


class DatabaseReplaced(Exception):
    """The history file was deleted or replaced since the daemon opened it."""


def open_database(path: Path) -> tuple[apsw.Connection, store.Counts, FileId]:
    """Open the write connection (migrated), count, and note which file it is.

    Raises CorruptDatabase for a file SQLite finds damaged, at the header or
    in the pages these first reads touch.
    """
    try:
        conn = store.open_write_connection(path)
    except _CORRUPT as exc:
        raise store.CorruptDatabase(path, exc) from exc
    try:
        counts = store.counts(conn)
        opened = file_id(path)
        if opened is None:
            raise DatabaseReplaced(f"{path} disappeared as it was opened; start the daemon again")
    except _CORRUPT as exc:
        conn.close()
        raise store.CorruptDatabase(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn, counts, opened


def file_id(path: Path) -> FileId | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def check_same_file(path: Path, opened: FileId) -> None:
    """Raise DatabaseReplaced unless ``path`` is still the file opened as ``opened``."""
    now = file_id(path)
    if now == opened:
        return
    what = "deleted" if now is None else "replaced by another file"
    raise DatabaseReplaced(
        f"{path} was {what} while the daemon ran; nothing is acked from now on "
        "(orchestrators keep their events and send them to the next daemon): restart "
        "the daemon (`choo daemon restart`) to start a new one"
    )


def set_aside(path: Path) -> Path:
    """Rename a damaged database, with its -wal and -shm, to
    ``<name>.corrupt-<UTC time>``; returns the new name of the database file.

    The three keep matching names, so SQLite can still open the copy as it was.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(os.path.lexists(f"{target}{suffix}") for suffix in _SIDE_FILES):
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in _SIDE_FILES:
        source = f"{path}{suffix}"
        if os.path.lexists(source):
            os.rename(source, f"{target}{suffix}")
    return target
