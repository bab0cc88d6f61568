"""Opening the history database, and the migrations that build its schema.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[i]`` takes
a database from version ``i`` to ``i + 1``; each runs in its own
transaction together with the version bump, so a failure leaves the file at
the last version that completed. A new schema version is one more function
appended to ``MIGRATIONS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import apsw

from choo_daemon.store.errors import CorruptDatabase, MigrationFailed, SchemaTooNew, StoreError
from choo_daemon.store.rollups import backfill
from choo_daemon.store.search import CREATE_INDEX_SQL

BUSY_TIMEOUT_MS = 5000

Migration = Callable[[apsw.Connection], None]


def _v1_initial(conn: apsw.Connection) -> None:
    # events.id is a plain INTEGER PRIMARY KEY, not AUTOINCREMENT: that would
    # cost a write to sqlite_sequence per insert, and nothing gives ids meaning.
    # (run_id, seq) is a named unique index rather than a table constraint so
    # that reads can name it in INDEXED BY.
    conn.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            repo_path TEXT NOT NULL,
            started_at TEXT NOT NULL,
            completed_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'failed', 'stopped')),
            parallelism INTEGER NOT NULL,
            total_units INTEGER NOT NULL,
            completed_units INTEGER NOT NULL DEFAULT 0,
            failed_units INTEGER NOT NULL DEFAULT 0,
            blocked_units INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            tasks_dir TEXT,
            dry_run INTEGER NOT NULL DEFAULT 0,
            resume_count INTEGER NOT NULL DEFAULT 0,
            last_seq INTEGER NOT NULL DEFAULT 0,
            event_count INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_repo_started ON runs(repo_path, started_at DESC, id DESC);
        CREATE INDEX runs_started ON runs(started_at DESC, id DESC);
        -- Not just (status): a status-filtered page must come out of the
        -- index already in page order, without a sort.
        CREATE INDEX runs_status_started ON runs(status, started_at DESC, id DESC);

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            time TEXT NOT NULL,
            type TEXT NOT NULL,
            unit TEXT,
            task INTEGER,
            pr INTEGER,
            payload TEXT,
            error TEXT
        );
        CREATE UNIQUE INDEX events_run_seq ON events(run_id, seq);
        CREATE INDEX events_run_type_seq ON events(run_id, type, seq);
        CREATE INDEX events_run_unit_seq ON events(run_id, unit, seq);

        CREATE TABLE graphs (
            run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
            nodes TEXT NOT NULL,
            edges TEXT NOT NULL,
            levels TEXT NOT NULL
        );
        """
    )


def _v2_provisional_markers(conn: apsw.Connection) -> None:
    # held_seq: the seq of a run.stopped the daemon wrote on its own (the
    # grace period ran out), retracted if the run's own events come after all.
    # start_token: what the client that started the run sent with run.start,
    # to tell its re-sent request from another run that picked the same id.
    conn.execute(
        """
        ALTER TABLE runs ADD COLUMN held_seq INTEGER;
        ALTER TABLE runs ADD COLUMN start_token TEXT;
        CREATE INDEX runs_held ON runs(id) WHERE held_seq IS NOT NULL;
        """
    )


def _v3_rollups(conn: apsw.Connection) -> None:
    # What each task and attempt did and cost, kept at write time from the
    # task.* events (rollups.py); the run row keeps the sums. Existing
    # events are folded in here, once.
    conn.execute(
        """
        ALTER TABLE runs ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN cost_estimated INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN agent_ms INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN tool_calls INTEGER NOT NULL DEFAULT 0;

        -- One row per task a run started; its sums are over its attempts.
        CREATE TABLE tasks (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            unit TEXT NOT NULL,
            task INTEGER NOT NULL,
            title TEXT,
            status TEXT NOT NULL DEFAULT 'running',
            stop_reason TEXT,
            flaky INTEGER NOT NULL DEFAULT 0,
            started_at TEXT,
            finished_at TEXT,
            duration_ms INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            cost_estimated INTEGER NOT NULL DEFAULT 0,
            agent_ms INTEGER NOT NULL DEFAULT 0,
            tool_calls INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, unit, task)
        ) WITHOUT ROWID;
        -- The cross-run table: one task's rows across runs.
        CREATE INDEX tasks_unit_task ON tasks(unit, task);

        -- attempt numbers the run's attempts of a task 1, 2, ... across
        -- orchestrators (a resumed run starts its tries at 1 again); try is
        -- the orchestrator's own number, start_seq the seq that began it.
        CREATE TABLE task_attempts (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            unit TEXT NOT NULL,
            task INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            try INTEGER,
            start_seq INTEGER NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            stop_reason TEXT,
            flaky INTEGER NOT NULL DEFAULT 0,
            agent_ms INTEGER,
            validation_ms INTEGER,
            exit_code INTEGER,
            session_id TEXT,
            model TEXT,
            agent_status TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cache_read_tokens INTEGER,
            cache_write_tokens INTEGER,
            cost_usd REAL,
            cost_estimated INTEGER NOT NULL DEFAULT 0,
            tool_calls INTEGER NOT NULL DEFAULT 0,
            validation_command TEXT,
            validation_output TEXT,
            title TEXT,
            PRIMARY KEY (run_id, unit, task, attempt)
        ) WITHOUT ROWID;

        -- Added up to here: a run's events above rolled_seq are not in its
        -- roll-ups yet (the database process adds them up when no batch
        -- waits, and a run's rest at its end: rollups.py).
        ALTER TABLE runs ADD COLUMN rolled_seq INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX runs_unrolled ON runs(id) WHERE rolled_seq < last_seq;
        -- task.* events stored at or below their run's rolled_seq (a replay
        -- filling a gap), not added up yet.
        CREATE TABLE rollup_queue (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID;
        """
    )
    backfill(conn)


def _v4_tasks_by_repo(conn: apsw.Connection) -> None:
    # The cross-run task table reads one repository's rows of a few tasks:
    # each task row keeps its run's repository (which never changes), filled
    # in by a trigger as the row is made, so that the fold (rollups.py) and
    # the v3 backfill that runs it need not know. The index holds flaky so
    # that picking the tasks shown reads the index alone.
    conn.execute(
        """
        ALTER TABLE tasks ADD COLUMN repo_path TEXT;
        UPDATE tasks SET repo_path = (SELECT repo_path FROM runs WHERE runs.id = tasks.run_id);
        CREATE TRIGGER tasks_repo_path AFTER INSERT ON tasks BEGIN
            UPDATE tasks SET repo_path = (SELECT repo_path FROM runs WHERE id = NEW.run_id)
            WHERE run_id = NEW.run_id AND unit = NEW.unit AND task = NEW.task;
        END;
        DROP INDEX tasks_unit_task;
        CREATE INDEX tasks_repo_task ON tasks(repo_path, unit, task, flaky);
        """
    )


def _v5_search(conn: apsw.Connection) -> None:
    # Full-text search (search.py). Only the index's tables here: building
    # the index of a large history takes minutes (about 20 µs an event), and
    # the daemon must answer at once; the database process indexes the
    # events stored so far right after, behind the writer, with its
    # progress in the log (search.CatchUp), and search says how many events
    # it cannot see yet.
    conn.execute(CREATE_INDEX_SQL)


def _v6_otlp_outbox(conn: apsw.Connection) -> None:
    # The runs still to send to the OTLP backend (store/outbox.py), written in
    # the transaction that ends a run when continuous export is configured.
    # generation counts the run's ends: a send deletes the row only if no
    # end came while it was under way. next_try_at orders the rows so that
    # one that keeps failing does not hold up the others.
    conn.execute(
        """
        CREATE TABLE otlp_outbox (
            run_id TEXT PRIMARY KEY,
            enqueued_at TEXT NOT NULL,
            generation INTEGER NOT NULL DEFAULT 1,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try_at TEXT NOT NULL,
            last_try_at TEXT,
            last_error TEXT
        ) WITHOUT ROWID;
        CREATE INDEX otlp_outbox_next ON otlp_outbox(next_try_at, run_id);
        """
    )


MIGRATIONS: tuple[Migration, ...] = (
    _v1_initial,
    _v2_provisional_markers,
    _v3_rollups,
    _v4_tasks_by_repo,
    _v5_search,
    _v6_otlp_outbox,
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: apsw.Connection) -> int:
    version: int = conn.pragma("user_version")
    return version


def migrate(
    conn: apsw.Connection,
    *,
    label: str = "",
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Bring the database up to ``len(migrations)``; return the final version.

    ``label`` names the file in error messages. Raises SchemaTooNew (nothing
    written) or MigrationFailed (that migration rolled back).
    """
    label = label or conn.filename
    target = len(migrations)
    current = schema_version(conn)
    if current > target:
        raise SchemaTooNew(label, current, target)
    for version in range(current + 1, target + 1):
        try:
            with conn:
                # Re-read inside the transaction: another process may have
                # migrated between our check and taking the write lock.
                if schema_version(conn) >= version:
                    continue
                migrations[version - 1](conn)
                conn.pragma("user_version", version)
        except Exception as exc:
            raise MigrationFailed(label, version, exc) from exc
    return target


def _open(path: Path, flags: int) -> apsw.Connection:
    try:
        conn = apsw.Connection(str(path), flags=flags)
    except apsw.CantOpenError as exc:
        raise _cannot_open(path, exc) from exc
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        # Reading the header is the first real file access: an unreadable or
        # foreign file fails here, with the path in the message.
        version = schema_version(conn)
    except (apsw.NotADBError, apsw.CorruptError) as exc:
        conn.close()
        raise CorruptDatabase(path, exc) from exc
    except apsw.CantOpenError as exc:
        conn.close()
        raise _cannot_open(path, exc) from exc
    if version > SCHEMA_VERSION:
        conn.close()
        raise SchemaTooNew(path, version, SCHEMA_VERSION)
    return conn


def _cannot_open(path: Path, exc: apsw.Error) -> StoreError:
    return StoreError(
        f"cannot open history database {path}: {exc}; check the file and its "
        "permissions, or move it aside to start a new history"
    )


def _strict(conn: apsw.Connection) -> None:
    """Foreign keys enforced; double quotes for identifiers only.

    What ``apsw.bestpractice`` does for these two, without importing it:
    it brings ``apsw.ext``, 5.5 MB in each of the daemon's two processes.
    """
    conn.pragma("foreign_keys", "ON")
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)


def open_write_connection(path: Path) -> apsw.Connection:
    """Open (creating if needed) the database for the one writer, migrated.

    The schema version is checked before anything is written, so a database
    from a newer choo is left byte for byte as it was.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = _open(path, apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    try:
        mode = conn.pragma("journal_mode", "wal")
        if mode != "wal":
            raise StoreError(
                f"history database {path} cannot use WAL journaling (got {mode!r}); "
                "put CHOO_HOME on a local file system"
            )
        # An ack promises that the batch survives a power loss, not only a
        # crash of the daemon. In WAL mode NORMAL syncs only at checkpoints;
        # FULL syncs the WAL at every commit, which is what the promise needs.
        conn.pragma("synchronous", "FULL")
        _strict(conn)
        # `with conn:` then takes the write lock at BEGIN, so a batch can
        # never fail half way for want of the lock (single writer or not).
        conn.transaction_mode = "IMMEDIATE"
        migrate(conn, label=str(path))
        # Let the query planner note where statistics would help (apsw's
        # bestpractice.connection_optimize).
        conn.pragma("optimize", 0x10002)
    except BaseException:
        conn.close()
        raise
    return conn


def open_read_connection(path: Path) -> apsw.Connection:
    """Open the database read-only, for the web API and history queries.

    WAL lets it read while the writer writes, and each read transaction sees
    only committed batches. The writer must have created and migrated the file.
    """
    conn = _open(path, apsw.SQLITE_OPEN_READONLY)
    try:
        version = schema_version(conn)
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"history database {path} has schema version {version}, older than "
                f"{SCHEMA_VERSION}; start the daemon once so that it upgrades the file"
            )
        _strict(conn)
        conn.pragma("query_only", 1)
    except BaseException:
        conn.close()
        raise
    return conn
