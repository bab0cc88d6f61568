"""Writes to the history store, on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from choo_daemon.store import (
    BadParameter,
    EventRow,
    NotOwner,
    RunExists,
    UnknownRun,
    append_events,
    append_resume_marker,
    complete_run,
    create_run,
    delete_runs_older_than,
    get_graph,
    get_run,
    held_runs,
    iso_utc,
    mark_stopped,
    open_write_connection,
    retract_held_marker,
    run_exists,
    running_runs,
    store_graph,
    utc_now,
)

T0 = "2026-01-20T14:30:52.123Z"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    conn = open_write_connection(tmp_path / "history.db")
    yield conn
    conn.close()


def new_run(
    conn: apsw.Connection, run_id: str = "run_1", repo: str = "/repo", started_at: str = T0
) -> None:
    with conn:
        assert create_run(
            conn,
            run_id=run_id,
            repo_path=repo,
            started_at=started_at,
            parallelism=2,
            total_units=3,
            tasks_dir="/repo/tasks",
            dry_run=True,
        )


def ev(run_id: str, seq: int, kind: str = "unit.started", unit: str | None = "u1") -> EventRow:
    payload = json.dumps({"n": seq})
    return (run_id, seq, "2026-01-20T14:31:00.000Z", kind, unit, 2, 7, payload, None)


def run_row(conn: apsw.Connection, run_id: str = "run_1") -> dict[str, object]:
    cursor = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
    names = [d[0] for d in cursor.getdescription()]
    row = cursor.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def stored_events(conn: apsw.Connection, run_id: str = "run_1") -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT run_id, seq, time, type, unit, task, pr, payload, error FROM events"
        " WHERE run_id = ? ORDER BY seq",
        (run_id,),
    ).fetchall()


# --- times ------------------------------------------------------------------


def test_utc_now_has_the_stored_shape() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    assert len(utc_now()) == len(T0) and utc_now().endswith("Z")
    moment = datetime(2026, 1, 20, 16, 30, 52, 123999, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == T0
    assert datetime.fromisoformat(utc_now()) <= datetime.now(UTC)


# --- runs -------------------------------------------------------------------


def test_create_run_records_a_running_run(conn: apsw.Connection) -> None:
    assert not run_exists(conn, "run_1")
    new_run(conn)
    assert run_exists(conn, "run_1")
    row = run_row(conn)
    assert row["repo_path"] == "/repo"
    assert row["started_at"] == T0
    assert row["status"] == "running"
    assert (row["parallelism"], row["total_units"], row["tasks_dir"]) == (2, 3, "/repo/tasks")
    assert row["dry_run"] == 1
    assert (row["completed_units"], row["failed_units"], row["blocked_units"]) == (0, 0, 0)
    assert (row["resume_count"], row["last_seq"], row["event_count"]) == (0, 0, 0)
    assert row["completed_at"] is None


def test_a_resent_run_start_changes_nothing(conn: apsw.Connection) -> None:
    new_run(conn)
    before = run_row(conn)
    with conn:
        created = create_run(
            conn, run_id="run_1", repo_path="/repo", started_at=T0, parallelism=9, total_units=9
        )
    assert created is False
    assert run_row(conn) == before


def test_a_resent_run_start_is_known_by_its_token(conn: apsw.Connection) -> None:
    start = {"repo_path": "/repo", "started_at": T0, "parallelism": 1, "total_units": 1}
    with conn:
        assert create_run(conn, run_id="run_t", token="first", **start) is True
    with conn:
        assert create_run(conn, run_id="run_t", token="first", **start) is False
    for other in ("second", None):
        with pytest.raises(RunExists, match="another run of this repository"), conn:
            create_run(conn, run_id="run_t", token=other, **start)


def test_two_runs_of_one_repository_with_one_id_never_merge(conn: apsw.Connection) -> None:
    new_run(conn)
    with pytest.raises(RunExists, match=r"run_1.*new run id"), conn:
        create_run(
            conn,
            run_id="run_1",
            repo_path="/repo",
            started_at="2026-02-01T00:00:00.000Z",
            parallelism=9,
            total_units=9,
        )


def test_create_run_with_an_id_taken_by_another_repo_raises(conn: apsw.Connection) -> None:
    new_run(conn)
    with pytest.raises(RunExists, match=r"run_1.*/repo.*/other"), conn:
        create_run(
            conn, run_id="run_1", repo_path="/other", started_at=T0, parallelism=1, total_units=1
        )
    assert run_row(conn)["repo_path"] == "/repo"


def test_create_run_refuses_a_time_in_another_shape(conn: apsw.Connection) -> None:
    with pytest.raises(BadParameter, match="started_at"), conn:
        create_run(
            conn,
            run_id="run_1",
            repo_path="/repo",
            started_at="2026-01-20 14:30:52",
            parallelism=1,
            total_units=1,
        )
    assert not run_exists(conn, "run_1")


def test_writes_outside_a_transaction_are_refused(conn: apsw.Connection) -> None:
    with pytest.raises(RuntimeError, match="with conn"):
        create_run(
            conn, run_id="run_1", repo_path="/r", started_at=T0, parallelism=1, total_units=1
        )
    new_run(conn)
    with pytest.raises(RuntimeError):
        append_events(conn, [ev("run_1", 1)])
    assert stored_events(conn) == []


# --- events -----------------------------------------------------------------


def test_append_events_stores_every_field_and_counts(conn: apsw.Connection) -> None:
    new_run(conn)
    rows = [ev("run_1", seq) for seq in range(1, 6)]
    rows[2] = ("run_1", 3, "2026-01-20T14:31:00.000Z", "task.failed", None, None, None, None, "x")
    with conn:
        assert append_events(conn, rows) == 5
    assert stored_events(conn) == rows
    row = run_row(conn)
    assert (row["last_seq"], row["event_count"]) == (5, 5)


def test_duplicate_events_are_ignored_and_not_counted(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        assert append_events(conn, [ev("run_1", s) for s in (1, 2, 3)]) == 3
    replay = [ev("run_1", s, kind="changed") for s in (2, 3)] + [ev("run_1", 4)]
    with conn:
        assert append_events(conn, replay) == 1
        assert append_events(conn, [ev("run_1", 4), ev("run_1", 4)]) == 0
    assert [e[3] for e in stored_events(conn)] == ["unit.started"] * 4  # originals kept
    row = run_row(conn)
    assert (row["last_seq"], row["event_count"]) == (4, 4)


def test_last_seq_is_the_highest_seq_whatever_the_order(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 10), ev("run_1", 3)])
        append_events(conn, [ev("run_1", 5)])
    row = run_row(conn)
    assert (row["last_seq"], row["event_count"]) == (10, 3)


def test_one_batch_may_mix_runs(conn: apsw.Connection) -> None:
    new_run(conn, "run_a")
    new_run(conn, "run_b")
    with conn:
        append_events(conn, [ev("run_a", 1)])
        inserted = append_events(
            conn, [ev("run_b", 1), ev("run_a", 1), ev("run_a", 2), ev("run_b", 2), ev("run_b", 3)]
        )
    assert inserted == 4
    a, b = run_row(conn, "run_a"), run_row(conn, "run_b")
    assert (a["last_seq"], a["event_count"]) == (2, 2)
    assert (b["last_seq"], b["event_count"]) == (3, 3)


def test_events_for_a_missing_run_raise_before_anything_is_written(
    conn: apsw.Connection,
) -> None:
    new_run(conn)
    with pytest.raises(UnknownRun) as raised, conn:
        append_events(conn, [ev("run_1", 1), ev("ghost", 1)])
    assert raised.value.run_id == "ghost"
    assert "ghost" in str(raised.value)
    with conn:
        # Inside a batch that goes on, nothing of the refused call remains.
        with pytest.raises(UnknownRun):
            append_events(conn, [ev("run_1", 1), ev("ghost", 1)])
        assert append_events(conn, [ev("run_1", 2)]) == 1
    assert [e[1] for e in stored_events(conn)] == [2]
    assert run_row(conn)["event_count"] == 1


def test_append_no_events_is_a_no_op(conn: apsw.Connection) -> None:
    with conn:
        assert append_events(conn, []) == 0


# --- graph ------------------------------------------------------------------


def test_store_graph_stores_compact_json_and_replaces(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        store_graph(conn, "run_1", ["a", "b"], [{"from": "b", "to": "a"}], [["a"], ["b"]])
    assert conn.execute("SELECT edges FROM graphs").get == '[{"from":"b","to":"a"}]'
    with conn:
        store_graph(conn, "run_1", ["c"], [], [["c"]])
    assert get_graph(conn, "run_1") == {"nodes": ["c"], "edges": [], "levels": [["c"]]}
    assert conn.execute("SELECT count(*) FROM graphs").get == 1


def test_store_graph_for_a_missing_run_raises(conn: apsw.Connection) -> None:
    with pytest.raises(UnknownRun), conn:
        store_graph(conn, "ghost", [], [], [])


# --- end, stop, resume --------------------------------------------------------


def test_complete_run_records_the_outcome(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        complete_run(
            conn,
            "run_1",
            status="failed",
            completed_at="2026-01-20T14:35:00.000Z",
            completed_units=1,
            failed_units=1,
            blocked_units=1,
            error="unit u2 failed",
        )
    row = run_row(conn)
    assert row["status"] == "failed"
    assert row["completed_at"] == "2026-01-20T14:35:00.000Z"
    assert (row["completed_units"], row["failed_units"], row["blocked_units"]) == (1, 1, 1)
    assert row["error"] == "unit u2 failed"


def test_complete_run_refuses_a_bad_status_and_a_missing_run(conn: apsw.Connection) -> None:
    new_run(conn)
    outcome: dict[str, Any] = {
        "completed_at": T0,
        "completed_units": 0,
        "failed_units": 0,
        "blocked_units": 0,
    }
    with pytest.raises(BadParameter, match="'running'"), conn:
        complete_run(conn, "run_1", status="running", **outcome)
    with pytest.raises(UnknownRun), conn:
        complete_run(conn, "ghost", status="completed", **outcome)
    assert run_row(conn)["status"] == "running"


def test_mark_stopped_appends_a_marker_and_stops_the_run(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 1), ev("run_1", 2)])
        seq = mark_stopped(conn, "run_1", time="2026-01-20T15:00:00.000Z", reason="client lost")
    assert seq == 3
    assert stored_events(conn)[-1][1:4] == (3, "2026-01-20T15:00:00.000Z", "run.stopped")
    assert json.loads(str(stored_events(conn)[-1][7])) == {"reason": "client lost", "by": "daemon"}
    row = run_row(conn)
    assert (row["status"], row["completed_at"]) == ("stopped", "2026-01-20T15:00:00.000Z")
    assert (row["last_seq"], row["event_count"]) == (3, 3)
    with conn:
        assert mark_stopped(conn, "run_1", time=T0, reason="again") is None
    assert len(stored_events(conn)) == 3
    with pytest.raises(UnknownRun), conn:
        mark_stopped(conn, "ghost", time=T0, reason="x")


def test_the_daemons_marker_is_retracted_when_the_run_speaks_again(
    conn: apsw.Connection,
) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 1), ev("run_1", 2)])
        assert mark_stopped(conn, "run_1", time=T0, reason="client lost") == 3
    assert held_runs(conn) == {"run_1"}
    with conn:
        assert retract_held_marker(conn, "run_1") is True
        # The orchestrator's own event 3, which the marker had taken the place of.
        append_events(conn, [ev("run_1", 3, "unit.completed"), ev("run_1", 4)])
    assert [(e[1], e[3]) for e in stored_events(conn)] == [
        (1, "unit.started"),
        (2, "unit.started"),
        (3, "unit.completed"),
        (4, "unit.started"),
    ]
    row = run_row(conn)
    assert (row["status"], row["completed_at"], row["held_seq"]) == ("running", None, None)
    assert (row["last_seq"], row["event_count"]) == (4, 4)
    assert held_runs(conn) == set()
    with conn:
        assert retract_held_marker(conn, "run_1") is False
        assert mark_stopped(conn, "run_1", time=T0, reason="lost again") == 5


def test_a_run_that_ends_after_the_daemon_stopped_it_shows_no_stop(
    conn: apsw.Connection,
) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 1)])
        mark_stopped(conn, "run_1", time=T0, reason="client lost")
    with conn:
        complete_run(
            conn,
            "run_1",
            status="completed",
            completed_at=T0,
            completed_units=1,
            failed_units=0,
            blocked_units=0,
        )
    assert [e[3] for e in stored_events(conn)] == ["unit.started"]
    row = run_row(conn)
    assert (row["status"], row["last_seq"], row["event_count"]) == ("completed", 1, 1)


def test_a_resume_makes_the_daemons_stop_final(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 1)])
        mark_stopped(conn, "run_1", time=T0, reason="client lost")
        assert append_resume_marker(conn, "run_1", time=T0, token="t") == 3
    assert held_runs(conn) == set()
    with conn:
        assert retract_held_marker(conn, "run_1") is False
    assert [e[3] for e in stored_events(conn)] == ["unit.started", "run.stopped", "run.resumed"]


def test_running_runs_lists_only_running_ones(conn: apsw.Connection) -> None:
    new_run(conn, "run_b", started_at="2026-01-02T00:00:00.000Z")
    new_run(conn, "run_a", started_at="2026-01-03T00:00:00.000Z")
    new_run(conn, "run_done")
    with conn:
        mark_stopped(conn, "run_done", time=T0, reason="gone")
    assert running_runs(conn) == ["run_b", "run_a"]


def test_resume_appends_a_marker_and_reopens_the_run(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", s) for s in range(1, 51)])
        mark_stopped(conn, "run_1", time="2026-01-20T15:00:00.000Z", reason="SIGINT")
        seq = append_resume_marker(
            conn, "run_1", time="2026-01-20T16:00:00.000Z", token="tok-1", reason="user"
        )
    assert seq == 52
    last = stored_events(conn)[-1]
    assert last[1:4] == (52, "2026-01-20T16:00:00.000Z", "run.resumed")
    assert json.loads(str(last[7])) == {"reason": "user", "resume_id": "tok-1"}
    row = run_row(conn)
    assert (row["status"], row["completed_at"], row["resume_count"]) == ("running", None, 1)
    assert (row["last_seq"], row["event_count"]) == (52, 52)


def stop(conn: apsw.Connection, run_id: str = "run_1") -> None:
    """End a run as an orchestrator stopped by a signal does."""
    complete_run(
        conn,
        run_id,
        status="stopped",
        completed_at=T0,
        completed_units=0,
        failed_units=0,
        blocked_units=0,
    )


def test_resume_retried_with_the_same_token_changes_nothing(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 1)])
        stop(conn)
        first = append_resume_marker(conn, "run_1", time=T0, token="tok-1")
    before = run_row(conn)
    with conn:
        again = append_resume_marker(conn, "run_1", time=utc_now(), token="tok-1")
    assert again == first == 2
    assert run_row(conn) == before
    with conn:
        stop(conn)
        other = append_resume_marker(conn, "run_1", time=T0, token="tok-2")
    assert other == 3
    assert run_row(conn)["resume_count"] == 2


def test_resume_token_counts_while_its_marker_is_the_latest_resume(
    conn: apsw.Connection,
) -> None:
    """A resume sent again (after a reconnect, to take the run back) resumes nothing;
    once another resumed the run, it is stale (PROTOCOL.md section 7, *Owners*)."""
    new_run(conn)
    with conn:
        stop(conn)
        assert append_resume_marker(conn, "run_1", time=T0, token="tok-1") == 1
        append_events(conn, [ev("run_1", 2)])
        stop(conn)
        assert append_resume_marker(conn, "run_1", time=T0, token="tok-1") == 1
        assert append_resume_marker(conn, "run_1", time=T0, token="tok-2") == 3
        with pytest.raises(NotOwner):
            append_resume_marker(conn, "run_1", time=T0, token="tok-1")


def test_a_resume_that_takes_over_a_running_run_records_where_it_stopped(
    conn: apsw.Connection,
) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 1)])
        assert append_resume_marker(conn, "run_1", time=T0, token="t", take_over=True) == 3
    assert [(e[1], e[3]) for e in stored_events(conn)] == [
        (1, "unit.started"),
        (2, "run.stopped"),
        (3, "run.resumed"),
    ]
    assert "taken over" in json.loads(str(stored_events(conn)[1][7]))["reason"]
    row = run_row(conn)
    assert (row["status"], row["last_seq"], row["event_count"]) == ("running", 3, 3)


def test_resume_of_a_missing_run_raises(conn: apsw.Connection) -> None:
    with pytest.raises(UnknownRun), conn:
        append_resume_marker(conn, "ghost", time=T0, token="t")


def test_a_resumed_run_shows_its_markers(conn: apsw.Connection) -> None:
    new_run(conn)
    with conn:
        append_events(conn, [ev("run_1", 1)])
        mark_stopped(conn, "run_1", time="2026-01-20T15:00:00.000Z", reason="SIGTERM")
        append_resume_marker(conn, "run_1", time="2026-01-20T16:00:00.000Z", token="t")
    run = get_run(conn, "run_1")
    assert run is not None
    assert run["markers"] == [
        {"seq": 2, "time": "2026-01-20T15:00:00.000Z", "type": "run.stopped", "reason": "SIGTERM"},
        {"seq": 3, "time": "2026-01-20T16:00:00.000Z", "type": "run.resumed", "reason": None},
    ]


# --- retention ----------------------------------------------------------------


def _finished(conn: apsw.Connection, run_id: str, started: str, ended: str) -> None:
    new_run(conn, run_id, started_at=started)
    with conn:
        append_events(conn, [ev(run_id, s) for s in range(1, 4)])
        store_graph(conn, run_id, [], [], [])
        complete_run(
            conn,
            run_id,
            status="completed",
            completed_at=ended,
            completed_units=3,
            failed_units=0,
            blocked_units=0,
        )


def test_retention_deletes_old_finished_runs_with_their_events_and_graph(
    conn: apsw.Connection,
) -> None:
    _finished(conn, "old_1", "2025-01-01T00:00:00.000Z", "2025-01-01T01:00:00.000Z")
    _finished(conn, "old_2", "2025-01-02T00:00:00.000Z", "2025-01-02T01:00:00.000Z")
    _finished(conn, "old_3", "2025-01-03T00:00:00.000Z", "2025-01-03T01:00:00.000Z")
    # Age counts from the start, even for a run resumed and finished lately.
    _finished(conn, "resumed", "2025-01-01T00:00:00.000Z", "2026-01-10T00:00:00.000Z")
    _finished(conn, "new", "2026-01-10T00:00:00.000Z", "2026-01-10T01:00:00.000Z")
    new_run(conn, "still_running", started_at="2024-01-01T00:00:00.000Z")
    cutoff = "2026-01-01T00:00:00.000Z"

    with conn:
        first = delete_runs_older_than(conn, cutoff, limit=2)
    with conn:
        second = delete_runs_older_than(conn, cutoff, limit=2)
    with conn:
        third = delete_runs_older_than(conn, cutoff, limit=2)

    assert first == ["old_1", "resumed"]
    assert second == ["old_2", "old_3"]
    assert third == []
    left = {row[0] for row in conn.execute("SELECT id FROM runs")}
    assert left == {"new", "still_running"}
    assert {row[0] for row in conn.execute("SELECT DISTINCT run_id FROM events")} == {"new"}
    assert {row[0] for row in conn.execute("SELECT run_id FROM graphs")} == {"new"}


def test_retention_limit_must_be_positive(conn: apsw.Connection) -> None:
    with pytest.raises(BadParameter, match="limit"), conn:
        delete_runs_older_than(conn, T0, limit=0)
