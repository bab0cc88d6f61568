"""Opening the history database: configuration, migrations, refusals, isolation."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from choo_daemon.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    MigrationFailed,
    SchemaTooNew,
    StoreError,
    append_events,
    counts,
    create_run,
    get_graph,
    get_run,
    list_runs,
    migrate,
    open_read_connection,
    open_write_connection,
    schema_version,
    store_graph,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "history.db"


@pytest.fixture
def writer(db_path: Path) -> Iterator[apsw.Connection]:
    conn = open_write_connection(db_path)
    yield conn
    conn.close()


@pytest.fixture
def reader(writer: apsw.Connection, db_path: Path) -> Iterator[apsw.Connection]:
    conn = open_read_connection(db_path)
    yield conn
    conn.close()


def _add_run(conn: apsw.Connection, run_id: str = "run_1", events: int = 3) -> None:
    with conn:
        create_run(
            conn,
            run_id=run_id,
            repo_path="/repo",
            started_at="2026-01-20T14:30:52.123Z",
            parallelism=2,
            total_units=4,
        )
        rows = [
            (
                run_id,
                seq,
                "2026-01-20T14:30:53.000Z",
                "unit.started",
                "u1",
                None,
                None,
                None,
                None,
            )
            for seq in range(1, events + 1)
        ]
        append_events(conn, rows)


def _raw(path: Path) -> apsw.Connection:
    return apsw.Connection(str(path))


def _tables(conn: apsw.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}


def test_fresh_database_is_created_private_migrated_and_configured(
    writer: apsw.Connection, db_path: Path
) -> None:
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert schema_version(writer) == SCHEMA_VERSION
    assert {"runs", "events", "graphs"} <= _tables(writer)
    assert writer.pragma("journal_mode") == "wal"
    assert writer.pragma("synchronous") == 2  # FULL
    assert writer.pragma("foreign_keys") == 1
    assert writer.pragma("busy_timeout") == 5000
    assert writer.transaction_mode == "IMMEDIATE"


def test_existing_parent_folder_is_used_as_is(tmp_path: Path) -> None:
    conn = open_write_connection(tmp_path / "history.db")
    conn.close()
    assert (tmp_path / "history.db").stat().st_size > 0


def test_reopening_keeps_data_and_version(writer: apsw.Connection, db_path: Path) -> None:
    _add_run(writer)
    writer.close()
    again = open_write_connection(db_path)
    try:
        assert schema_version(again) == SCHEMA_VERSION
        assert counts(again) == {"runs": 1, "events": 3}
    finally:
        again.close()


def test_newer_schema_is_refused_and_the_file_left_byte_for_byte(db_path: Path) -> None:
    db_path.parent.mkdir()
    # A rollback-journal file: switching it to WAL would rewrite its header,
    # so an identical file proves nothing was configured before the refusal.
    raw = _raw(db_path)
    raw.execute("CREATE TABLE future(x); INSERT INTO future VALUES (1); PRAGMA user_version = 7")
    raw.close()
    before = db_path.read_bytes()

    with pytest.raises(SchemaTooNew) as refused:
        open_write_connection(db_path)
    with pytest.raises(SchemaTooNew):
        open_read_connection(db_path)

    message = str(refused.value)
    assert str(db_path) in message
    assert "schema version 7" in message
    assert f"({SCHEMA_VERSION})" in message
    assert "CHOO_HOME" in message
    assert refused.value.found == 7
    assert db_path.read_bytes() == before


def test_failed_migration_raises_and_rolls_back(writer: apsw.Connection, db_path: Path) -> None:
    writer.close()

    def broken_v2(conn: apsw.Connection) -> None:
        conn.execute("CREATE TABLE half_done(x)")
        raise ValueError("disk says no")

    conn = _raw(db_path)
    try:
        with pytest.raises(MigrationFailed) as failed:
            migrate(conn, label=str(db_path), migrations=(*MIGRATIONS, broken_v2))
        assert schema_version(conn) == SCHEMA_VERSION
        assert "half_done" not in _tables(conn)
    finally:
        conn.close()
    message = str(failed.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "disk says no" in message
    assert str(db_path) in message


def test_v1_data_survives_migration_to_a_newer_version(
    writer: apsw.Connection, db_path: Path
) -> None:
    _add_run(writer, events=5)
    with writer:
        store_graph(writer, "run_1", ["u1"], [], [["u1"]])
    writer.close()

    def v2_adds_a_column(conn: apsw.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    conn = _raw(db_path)
    try:
        assert migrate(conn, migrations=(*MIGRATIONS, v2_adds_a_column)) == SCHEMA_VERSION + 1
        assert schema_version(conn) == SCHEMA_VERSION + 1
        run = get_run(conn, "run_1")
        assert run is not None
        assert (run["event_count"], run["last_seq"], run["total_units"]) == (5, 5, 4)
        assert conn.execute("SELECT count(*) FROM events").get == 5
        assert get_graph(conn, "run_1") == {"nodes": ["u1"], "edges": [], "levels": [["u1"]]}
        assert conn.execute("SELECT note FROM runs").get == ""
    finally:
        conn.close()


def test_migrations_apply_in_order_from_an_empty_file(tmp_path: Path) -> None:
    applied: list[int] = []

    def v2(conn: apsw.Connection) -> None:
        applied.append(schema_version(conn))

    conn = _raw(tmp_path / "empty.db")
    try:
        assert migrate(conn, migrations=(*MIGRATIONS, v2)) == SCHEMA_VERSION + 1
        assert applied == [SCHEMA_VERSION]  # v2 ran after v1 was committed
        assert {"runs", "events", "graphs"} <= _tables(conn)
    finally:
        conn.close()


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"definitely not sqlite, just some text that is long enough" * 20)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=str(path)):
        open_write_connection(path)
    assert path.read_bytes() == before


def test_read_connection_refuses_a_missing_database(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with pytest.raises(StoreError, match=str(path)):
        open_read_connection(path)
    assert not path.exists()


def test_read_connection_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    raw = _raw(path)
    raw.execute("CREATE TABLE other(x)")
    raw.close()
    with pytest.raises(StoreError, match="older"):
        open_read_connection(path)


def test_read_connection_is_read_only(reader: apsw.Connection) -> None:
    assert reader.pragma("query_only") == 1
    assert reader.pragma("busy_timeout") == 5000
    assert reader.pragma("foreign_keys") == 1
    assert reader.readonly("main")
    with pytest.raises(apsw.ReadOnlyError):
        reader.execute(
            "INSERT INTO runs(id, repo_path, started_at, parallelism, total_units)"
            " VALUES ('x', '/r', '2026-01-01T00:00:00.000Z', 1, 1)"
        )


def test_reader_never_sees_an_uncommitted_batch(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    with writer:
        create_run(
            writer,
            run_id="run_1",
            repo_path="/repo",
            started_at="2026-01-20T14:30:52.123Z",
            parallelism=1,
            total_units=1,
        )
        append_events(
            writer,
            [("run_1", 1, "2026-01-20T14:30:53.000Z", "x", None, None, None, None, None)],
        )
        assert counts(reader) == {"runs": 0, "events": 0}
        assert get_run(reader, "run_1") is None
    assert counts(reader) == {"runs": 1, "events": 1}


def test_an_open_read_snapshot_neither_blocks_the_writer_nor_moves(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    _add_run(writer, "run_1")
    writer.set_busy_timeout(0)  # a blocked commit would fail at once
    with reader:
        assert list_runs(reader)["total"] == 1
        _add_run(writer, "run_2")  # commits while the reader holds its snapshot
        assert list_runs(reader)["total"] == 1
    assert list_runs(reader)["total"] == 2
