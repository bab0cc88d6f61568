"""choo_daemon.dbfile on real files: setting a damaged database aside with its
-wal and -shm, and telling whether history.db is still the file opened."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from choo_daemon import dbfile, store
from protocol.home import Home


def test_set_aside_moves_the_database_with_its_wal_and_shm(home: Home) -> None:
    db = home.database
    files = {"": b"main", "-wal": b"wal", "-shm": b"shm"}
    for suffix, data in files.items():
        Path(f"{db}{suffix}").write_bytes(data)

    first = dbfile.set_aside(db)
    assert re.fullmatch(r"history\.db\.corrupt-\d{8}T\d{6}Z", first.name), first.name
    for suffix, data in files.items():
        assert Path(f"{first}{suffix}").read_bytes() == data
        assert not os.path.lexists(f"{db}{suffix}")

    # Again within the same second: a new name, the first copy untouched.
    db.write_bytes(b"second")
    second = dbfile.set_aside(db)
    if second.name.startswith(first.name):
        assert second.name == f"{first.name}-2"
    assert second.read_bytes() == b"second" and first.read_bytes() == b"main"
    assert not os.path.lexists(f"{second}-wal"), "no -wal was there to move"


def test_the_file_opened_is_told_from_one_deleted_or_put_in_its_place(home: Home) -> None:
    conn, counts, opened = dbfile.open_database(home.database)
    conn.close()
    assert counts == {"runs": 0, "events": 0}
    dbfile.check_same_file(home.database, opened)  # still the same: no error

    os.replace(home.database, home.root / "elsewhere.db")
    with pytest.raises(dbfile.DatabaseReplaced, match="was deleted while the daemon ran"):
        dbfile.check_same_file(home.database, opened)

    store.open_write_connection(home.database).close()
    with pytest.raises(dbfile.DatabaseReplaced, match="was replaced by another file"):
        dbfile.check_same_file(home.database, opened)

    os.replace(home.root / "elsewhere.db", home.database)  # put back: the same file again
    dbfile.check_same_file(home.database, opened)
