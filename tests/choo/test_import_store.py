"""What an import needs from the store: ``run.resumed`` markers that arrive as
ordinary events (an imported run's) count as resumes, once each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from choo_daemon import store

T = "2026-01-20T14:30:52.123Z"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = store.open_write_connection(tmp_path / "history.db")
    with connection:
        store.create_run(
            connection,
            run_id="run_1",
            repo_path="/repo",
            started_at=T,
            parallelism=1,
            total_units=1,
        )
    yield connection
    connection.close()


def row(seq: int, kind: str, payload: str | None = None) -> store.EventRow:
    return ("run_1", seq, T, kind, None, None, None, payload, None)


def resumes(conn: apsw.Connection) -> tuple[int, int]:
    found = conn.execute("SELECT resume_count, event_count FROM runs WHERE id = 'run_1'").fetchone()
    assert found is not None
    return found[0], found[1]


def test_run_resumed_events_count_as_resumes_once(conn: apsw.Connection) -> None:
    marker = row(3, "run.resumed", '{"reason":"resumed with `choo resume`","resume_id":"t1"}')
    batch = [row(1, "unit.started"), row(2, "run.stopped", '{"reason":"SIGINT"}'), marker]
    with conn:
        assert store.append_events(conn, batch) == 3
    assert resumes(conn) == (1, 3)

    with conn:  # a replay of the same rows (a reconnecting client): nothing new
        assert store.append_events(conn, [*batch, marker]) == 0
    assert resumes(conn) == (1, 3)

    with conn:
        store.append_events(
            conn, [row(4, "unit.completed"), row(5, "run.resumed", '{"reason":null}'), marker]
        )
    assert resumes(conn) == (2, 5)
    detail = store.get_run(conn, "run_1")
    assert detail is not None
    assert [(m["seq"], m["type"]) for m in detail["markers"]] == [
        (2, "run.stopped"),
        (3, "run.resumed"),
        (5, "run.resumed"),
    ]


def test_a_resume_request_still_counts_once(conn: apsw.Connection) -> None:
    with conn:
        store.append_events(conn, [row(1, "unit.started")])
        store.complete_run(
            conn,
            "run_1",
            status="stopped",
            completed_at=T,
            completed_units=0,
            failed_units=0,
            blocked_units=0,
        )
        seq = store.append_resume_marker(conn, "run_1", time=T, token="abc", reason="again")
    assert seq == 2
    assert resumes(conn) == (1, 2)
