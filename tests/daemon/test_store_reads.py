"""Reads of the history store: pages, filters, cursors, and their query plans."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest

from choo_daemon.store import (
    MAX_EVENTS_PAGE,
    AmbiguousRun,
    BadCursor,
    BadParameter,
    EventRow,
    UnknownRun,
    append_events,
    complete_run,
    counts,
    create_run,
    get_graph,
    get_run,
    iso_utc,
    list_repos,
    list_runs,
    mark_stopped,
    open_read_connection,
    open_write_connection,
    reads,
    resolve_run_id,
    run_events,
    store_graph,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ("running", "completed", "failed", "stopped")
TYPES = ("task.started", "task.completed", "unit.started", "task.retry", "unit.completed")
UNITS = ("u1", "u2", "u3")


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[apsw.Connection]:
    conn = open_write_connection(tmp_path / "history.db")
    yield conn
    conn.close()


@pytest.fixture
def reader(writer: apsw.Connection, tmp_path: Path) -> Iterator[apsw.Connection]:
    conn = open_read_connection(tmp_path / "history.db")
    yield conn
    conn.close()


def add_run(
    conn: apsw.Connection,
    run_id: str,
    *,
    repo: str = "/repo",
    started_at: str = "2026-01-20T14:30:52.123Z",
    status: str = "running",
    completed_at: str = "2026-01-20T14:31:02.623Z",
) -> None:
    with conn:
        create_run(
            conn,
            run_id=run_id,
            repo_path=repo,
            started_at=started_at,
            parallelism=4,
            total_units=3,
        )
        if status != "running":
            complete_run(
                conn,
                run_id,
                status=status,
                completed_at=completed_at,
                completed_units=2,
                failed_units=1,
                blocked_units=0,
                error="boom" if status == "failed" else None,
            )


# --- runs -------------------------------------------------------------------


@pytest.fixture
def many_runs(writer: apsw.Connection) -> list[tuple[str, str, str, str]]:
    """120 runs over two repos; three at a time share a start time."""
    runs = []
    for i in range(120):
        started = iso_utc(BASE + timedelta(minutes=i // 3))
        run_id = f"run_{i:03d}"
        repo = "/a" if i % 2 else "/b"
        status = STATUSES[i % 4]
        add_run(writer, run_id, repo=repo, started_at=started, status=status)
        runs.append((started, run_id, repo, status))
    return runs


def _all_pages(conn: apsw.Connection, limit: int, **filters: Any) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor = None
    totals = set()
    while True:
        page = list_runs(conn, limit=limit, cursor=cursor, **filters)
        assert len(page["runs"]) <= limit
        totals.add(page["total"])
        ids.extend(run["id"] for run in page["runs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["runs"]) == limit
    assert len(totals) == 1
    return ids, totals.pop()


@pytest.mark.parametrize(
    "filters",
    [{}, {"repo": "/a"}, {"status": "completed"}, {"repo": "/a", "status": "stopped"}],
)
@pytest.mark.parametrize("limit", [7, 30, 500])
def test_run_pages_cover_every_run_once_newest_first(
    reader: apsw.Connection,
    many_runs: list[tuple[str, str, str, str]],
    filters: dict[str, str],
    limit: int,
) -> None:
    expected = [
        run_id
        for started, run_id, repo, status in sorted(many_runs, reverse=True)
        if filters.get("repo", repo) == repo and filters.get("status", status) == status
    ]
    assert expected  # the filter selects something
    ids, total = _all_pages(reader, limit, **filters)
    assert ids == expected
    assert total == len(expected)


def test_a_last_page_that_is_exactly_full_has_no_cursor(
    reader: apsw.Connection, many_runs: list[tuple[str, str, str, str]]
) -> None:
    first = list_runs(reader, limit=60)
    second = list_runs(reader, limit=60, cursor=first["next_cursor"])
    assert len(second["runs"]) == 60
    assert second["next_cursor"] is None


def test_a_cursor_is_unaffected_by_newer_runs(
    writer: apsw.Connection,
    reader: apsw.Connection,
    many_runs: list[tuple[str, str, str, str]],
) -> None:
    first = list_runs(reader, limit=10)
    add_run(writer, "run_newest", started_at=iso_utc(BASE + timedelta(days=1)))
    second = list_runs(reader, limit=10, cursor=first["next_cursor"])
    assert second["total"] == 121
    seen = [r["id"] for r in first["runs"] + second["runs"]]
    assert seen == [f"run_{i:03d}" for i in range(119, 99, -1)]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00.000Z"]').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00.000Z", 5]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_malformed_cursor_is_refused(reader: apsw.Connection, cursor: str) -> None:
    with pytest.raises(BadCursor, match="first page"):
        list_runs(reader, cursor=cursor)


def test_run_list_parameters_are_checked(reader: apsw.Connection) -> None:
    with pytest.raises(BadParameter, match=r"'done'.*running, completed, failed, stopped"):
        list_runs(reader, status="done")
    for limit in (0, 501):
        with pytest.raises(BadParameter, match="limit"):
            list_runs(reader, limit=limit)
    assert list_runs(reader, limit=500) == {
        "runs": [],
        "next_cursor": None,
        "prev_cursor": None,
        "total": 0,
        "newer": 0,
    }


def test_a_run_has_every_field(writer: apsw.Connection, reader: apsw.Connection) -> None:
    with writer:
        create_run(
            writer,
            run_id="run_1",
            repo_path="/repo",
            started_at="2026-01-20T14:30:52.123Z",
            parallelism=4,
            total_units=3,
            tasks_dir="/repo/tasks",
            dry_run=True,
        )
        append_events(writer, [_event_row("run_1", 1), _event_row("run_1", 2)])
        complete_run(
            writer,
            "run_1",
            status="failed",
            completed_at="2026-01-20T14:31:02.623Z",
            completed_units=1,
            failed_units=1,
            blocked_units=1,
            error="unit u2 failed",
        )
    expected = {
        "id": "run_1",
        "repo_path": "/repo",
        "status": "failed",
        "started_at": "2026-01-20T14:30:52.123Z",
        "completed_at": "2026-01-20T14:31:02.623Z",
        "duration_ms": 10500,
        "parallelism": 4,
        "total_units": 3,
        "completed_units": 1,
        "failed_units": 1,
        "blocked_units": 1,
        "resume_count": 0,
        "dry_run": True,
        "tasks_dir": "/repo/tasks",
        "error": "unit u2 failed",
        "event_count": 2,
        "last_seq": 2,
        "cost_usd": 0.0,
        "cost_estimated": False,
    }
    assert list_runs(reader)["runs"] == [expected]
    totals = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": 0.0,
        "cost_estimated": False,
        "agent_ms": 0,
        "attempts": 0,
        "tool_calls": 0,
    }
    assert get_run(reader, "run_1") == {
        **expected,
        "markers": [],
        "has_graph": False,
        "totals": totals,
    }


def test_a_running_run_has_no_duration(writer: apsw.Connection, reader: apsw.Connection) -> None:
    add_run(writer, "run_1")
    run = get_run(reader, "run_1")
    assert run is not None
    assert (run["status"], run["duration_ms"], run["dry_run"]) == ("running", None, False)


def test_get_run_markers_and_graph(writer: apsw.Connection, reader: apsw.Connection) -> None:
    add_run(writer, "run_1")
    with writer:
        append_events(writer, [_event_row("run_1", 1)])
        mark_stopped(writer, "run_1", time="2026-01-20T15:00:00.000Z", reason="SIGINT")
        store_graph(writer, "run_1", ["u1"], [], [["u1"]])
    run = get_run(reader, "run_1")
    assert run is not None
    assert run["has_graph"] is True
    assert run["markers"] == [
        {"seq": 2, "time": "2026-01-20T15:00:00.000Z", "type": "run.stopped", "reason": "SIGINT"}
    ]
    assert get_run(reader, "ghost") is None


def test_get_graph(writer: apsw.Connection, reader: apsw.Connection) -> None:
    add_run(writer, "run_1")
    add_run(writer, "run_2")
    edges = [{"from": "b", "to": "a"}]
    with writer:
        store_graph(writer, "run_1", ["a", "b"], edges, [["a"], ["b"]])
    assert get_graph(reader, "run_1") == {
        "nodes": ["a", "b"],
        "edges": edges,
        "levels": [["a"], ["b"]],
    }
    assert get_graph(reader, "run_2") is None
    assert get_graph(reader, "ghost") is None


def test_list_repos_newest_first_with_counts(
    reader: apsw.Connection, many_runs: list[tuple[str, str, str, str]]
) -> None:
    last = iso_utc(BASE + timedelta(minutes=39))
    assert list_repos(reader) == [
        {"repo_path": "/a", "run_count": 60, "last_started_at": last},  # run_119
        {"repo_path": "/b", "run_count": 60, "last_started_at": last},  # run_118, same minute
    ]


def _ids(page: Any) -> list[str]:
    return [run["id"] for run in page["runs"]]


@pytest.mark.parametrize("filters", [{}, {"repo": "/a"}, {"status": "failed"}])
@pytest.mark.parametrize("limit", [1, 7, 50])
def test_run_pages_go_back_from_the_oldest_to_the_newest(
    reader: apsw.Connection,
    many_runs: list[tuple[str, str, str, str]],
    filters: dict[str, Any],
    limit: int,
) -> None:
    newest_first, total = _all_pages(reader, limit, **filters)
    page = list_runs(reader, limit=limit, oldest=True, **filters)
    assert _ids(page) == newest_first[-limit:] and page["next_cursor"] is None
    assert page["newer"] == total - len(page["runs"])
    walked = _ids(page)
    while page["prev_cursor"] is not None:
        page = list_runs(reader, limit=limit, before=page["prev_cursor"], **filters)
        assert len(page["runs"]) == limit
        # Each page says where it is, and leads on both ways.
        assert _ids(page) == newest_first[page["newer"] : page["newer"] + limit]
        assert page["next_cursor"] is not None
        walked = _ids(page) + [i for i in walked if i not in _ids(page)]
    assert page["newer"] == 0
    assert walked == newest_first


def test_a_page_before_the_newest_runs_is_the_first_page(
    reader: apsw.Connection, many_runs: list[tuple[str, str, str, str]]
) -> None:
    first = list_runs(reader, limit=10)
    assert first["prev_cursor"] is None and first["newer"] == 0
    second = list_runs(reader, limit=10, cursor=first["next_cursor"])
    assert second["newer"] == 10 and second["prev_cursor"] is not None
    # From a position 3 runs down, the page before holds the newest 10, not 3.
    three = list_runs(reader, limit=3)
    near = list_runs(reader, limit=10, before=three["next_cursor"])
    assert _ids(near) == _ids(first) and near["newer"] == 0
    with pytest.raises(BadParameter, match="only one"):
        list_runs(reader, cursor=first["next_cursor"], oldest=True)


def test_list_repos_order_follows_the_latest_run(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    add_run(writer, "r1", repo="/old", started_at="2026-01-01T00:00:00.000Z")
    add_run(writer, "r2", repo="/new", started_at="2026-01-02T00:00:00.000Z")
    add_run(writer, "r3", repo="/old", started_at="2025-01-01T00:00:00.000Z")
    assert [(r["repo_path"], r["run_count"]) for r in list_repos(reader)] == [
        ("/new", 1),
        ("/old", 2),
    ]


def test_counts(writer: apsw.Connection, reader: apsw.Connection) -> None:
    assert counts(reader) == {"runs": 0, "events": 0}
    add_run(writer, "run_1")
    add_run(writer, "run_2")
    with writer:
        append_events(writer, [_event_row("run_1", s) for s in range(1, 8)])
        append_events(writer, [_event_row("run_2", s) for s in range(1, 4)])
    assert counts(reader) == {"runs": 2, "events": 10}


def test_resolve_run_id(writer: apsw.Connection, reader: apsw.Connection) -> None:
    for run_id in ("run_1", "run_10", "run_2abc", "other"):
        add_run(writer, run_id)
    assert resolve_run_id(reader, "run_1") == "run_1"  # exact, though also a prefix
    assert resolve_run_id(reader, "run_2") == "run_2abc"
    assert resolve_run_id(reader, "oth") == "other"
    with pytest.raises(AmbiguousRun) as ambiguous:
        resolve_run_id(reader, "run_")
    assert ambiguous.value.candidates == ["run_1", "run_10", "run_2abc"]
    assert "run_10" in str(ambiguous.value)
    with pytest.raises(UnknownRun) as unknown:
        resolve_run_id(reader, "nope")
    assert unknown.value.run_id == "nope"
    with pytest.raises(BadParameter):
        resolve_run_id(reader, "")


# --- events -----------------------------------------------------------------


def _event_row(run_id: str, seq: int) -> EventRow:
    kind = "taskforce.x" if seq % 50 == 0 else TYPES[seq % len(TYPES)]
    unit = None if seq % 7 == 0 else UNITS[seq % len(UNITS)]
    payload = None if seq % 11 == 0 else json.dumps({"seq": seq, "nested": [1, {"a": None}]})
    error = "oops" if kind == "task.retry" else None
    return (
        run_id,
        seq,
        iso_utc(BASE + timedelta(seconds=seq)),
        kind,
        unit,
        seq % 4,
        None,
        payload,
        error,
    )


N_EVENTS = 300


@pytest.fixture
def events_run(writer: apsw.Connection) -> list[EventRow]:
    add_run(writer, "run_1")
    add_run(writer, "run_other")
    rows = [_event_row("run_1", seq) for seq in range(1, N_EVENTS + 1)]
    with writer:
        append_events(writer, rows)
        # Another run's events must never leak into run_1's pages.
        append_events(writer, [_event_row("run_other", seq) for seq in range(1, 40)])
    return rows


def _walk(conn: apsw.Connection, limit: int, **filters: Any) -> list[int]:
    seqs: list[int] = []
    after = filters.pop("after", 0)
    while True:
        page = run_events(conn, "run_1", after=after, limit=limit, **filters)
        assert len(page["events"]) <= limit
        seqs.extend(event["seq"] for event in page["events"])
        if page["next_after"] is None:
            return seqs
        assert len(page["events"]) == limit
        after = page["next_after"]


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({}, lambda r: True),
        ({"type": "task.started"}, lambda r: r[3] == "task.started"),
        ({"type": "task."}, lambda r: r[3].startswith("task.")),
        ({"type": "task"}, lambda r: False),
        ({"type": "unit."}, lambda r: r[3].startswith("unit.")),
        ({"type": "nothing."}, lambda r: False),
        ({"unit": "u2"}, lambda r: r[4] == "u2"),
        ({"unit": "u2", "type": "task.retry"}, lambda r: r[4] == "u2" and r[3] == "task.retry"),
        ({"unit": "u1", "type": "task."}, lambda r: r[4] == "u1" and r[3].startswith("task.")),
        ({"after": 150}, lambda r: r[1] > 150),
        ({"after": 150, "type": "task."}, lambda r: r[1] > 150 and r[3].startswith("task.")),
        ({"after": N_EVENTS}, lambda r: False),
    ],
)
@pytest.mark.parametrize("limit", [1, 7, 100, MAX_EVENTS_PAGE])
def test_event_pages_filter_and_cover_every_match_once(
    reader: apsw.Connection,
    events_run: list[EventRow],
    filters: dict[str, Any],
    keep: Any,
    limit: int,
) -> None:
    expected = [row[1] for row in events_run if keep(row)]
    assert _walk(reader, limit, **filters) == expected


def test_an_event_has_every_field_with_payload_parsed(
    reader: apsw.Connection, events_run: list[EventRow]
) -> None:
    events = run_events(reader, "run_1", after=20, limit=3)["events"]
    assert events[0] == {
        "seq": 21,
        "time": iso_utc(BASE + timedelta(seconds=21)),
        "type": "task.completed",
        "unit": None,
        "task": 1,
        "pr": None,
        "payload": {"seq": 21, "nested": [1, {"a": None}]},
        "error": None,
    }
    assert events[1]["payload"] is None  # seq 22 was stored without a payload
    assert events[2]["error"] == "oops"  # seq 23 is a task.retry


def test_next_after_is_none_only_when_nothing_follows(
    reader: apsw.Connection, events_run: list[EventRow]
) -> None:
    page = run_events(reader, "run_1", after=N_EVENTS - 10, limit=10)
    assert [e["seq"] for e in page["events"]] == list(range(N_EVENTS - 9, N_EVENTS + 1))
    assert page["next_after"] is None
    page = run_events(reader, "run_1", after=N_EVENTS - 10, limit=9)
    assert page["next_after"] == N_EVENTS - 1


def test_event_page_parameters_are_checked(
    reader: apsw.Connection, events_run: list[EventRow]
) -> None:
    for limit in (0, MAX_EVENTS_PAGE + 1):
        with pytest.raises(BadParameter, match="limit"):
            run_events(reader, "run_1", limit=limit)
    with pytest.raises(BadParameter, match="after"):
        run_events(reader, "run_1", after=-1)
    with pytest.raises(BadParameter, match="type"):
        run_events(reader, "run_1", type="")
    with pytest.raises(UnknownRun):
        run_events(reader, "ghost")


def _walk_back(conn: apsw.Connection, limit: int, **filters: Any) -> list[int]:
    """Every matching seq, paging backward from the end with ``before``."""
    pages: list[list[int]] = []
    before = filters.pop("before", N_EVENTS + 1)
    while True:
        page = run_events(conn, "run_1", before=before, limit=limit, **filters)
        seqs = [event["seq"] for event in page["events"]]
        assert seqs == sorted(seqs) and len(seqs) <= limit
        pages.append(seqs)
        if page["prev_before"] is None:
            return [seq for chunk in reversed(pages) for seq in chunk]
        assert len(seqs) == limit and page["prev_before"] == seqs[0]
        before = page["prev_before"]


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({}, lambda r: True),
        ({"type": "task.started"}, lambda r: r[3] == "task.started"),
        ({"type": "task."}, lambda r: r[3].startswith("task.")),
        ({"type": "nothing."}, lambda r: False),
        ({"unit": "u2"}, lambda r: r[4] == "u2"),
        ({"unit": "u1", "type": "task."}, lambda r: r[4] == "u1" and r[3].startswith("task.")),
        ({"before": 151, "type": "task."}, lambda r: r[1] < 151 and r[3].startswith("task.")),
        ({"before": 1}, lambda r: False),
    ],
)
@pytest.mark.parametrize("limit", [1, 7, 100])
def test_pages_back_from_before_cover_every_match_once_in_seq_order(
    reader: apsw.Connection,
    events_run: list[EventRow],
    filters: dict[str, Any],
    keep: Any,
    limit: int,
) -> None:
    expected = [row[1] for row in events_run if keep(row)]
    assert _walk_back(reader, limit, **filters) == expected


def test_the_last_page_of_a_filter_comes_at_once_with_links_both_ways(
    reader: apsw.Connection, events_run: list[EventRow]
) -> None:
    matching = [r[1] for r in events_run if r[3].startswith("task.") and r[4] == "u1"]
    page = run_events(reader, "run_1", type="task.", unit="u1", before=N_EVENTS + 1, limit=5)
    assert [e["seq"] for e in page["events"]] == matching[-5:]
    assert page["next_after"] is None  # nothing matches after the last page
    assert page["prev_before"] == matching[-5]
    # One page back from the middle links forward again, and back.
    middle = run_events(reader, "run_1", type="task.", unit="u1", before=matching[10], limit=3)
    assert [e["seq"] for e in middle["events"]] == matching[7:10]
    assert middle["next_after"] == matching[9] and middle["prev_before"] == matching[7]
    # A forward page after the start knows that events precede it.
    ahead = run_events(reader, "run_1", type="task.", unit="u1", after=matching[3], limit=2)
    assert ahead["prev_before"] == matching[4]
    first = run_events(reader, "run_1", type="task.", unit="u1", limit=2)
    assert first["prev_before"] is None


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({}, lambda r: True),
        ({"type": "task.started"}, lambda r: r[3] == "task.started"),
        ({"type": "task."}, lambda r: r[3].startswith("task.")),
        ({"type": "task"}, lambda r: False),
        ({"unit": "u2"}, lambda r: r[4] == "u2"),
        ({"unit": "u2", "type": "task.retry"}, lambda r: r[4] == "u2" and r[3] == "task.retry"),
        ({"unit": "u1", "type": "task."}, lambda r: r[4] == "u1" and r[3].startswith("task.")),
    ],
)
def test_the_count_is_of_the_matching_events_in_the_whole_run(
    reader: apsw.Connection, events_run: list[EventRow], filters: dict[str, Any], keep: Any
) -> None:
    expected = sum(1 for row in events_run if keep(row))
    for where in ({"after": 0}, {"after": 200}, {"before": 50}):
        page = run_events(reader, "run_1", limit=3, count=True, **where, **filters)
        assert (page["total"], page["total_exact"]) == (expected, True)
    # Without count (the stream's backlog pages), none is made.
    page = run_events(reader, "run_1", limit=3, **filters)
    assert (page["total"], page["total_exact"]) == (None, None)


def test_a_count_past_the_cap_stops_and_says_so(
    reader: apsw.Connection, events_run: list[EventRow], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "COUNT_CAP", 40)
    monkeypatch.setattr(reads, "LOOKUP_CAP", 40)
    many = run_events(reader, "run_1", type="task.", count=True)
    assert (many["total"], many["total_exact"]) == (40, False)
    # A filter no index answers alone reads at most the cap's rows: a lower bound.
    both = [r for r in events_run if r[3] == "task.retry" and r[4] == "u2"]
    some = run_events(reader, "run_1", type="task.retry", unit="u2", count=True)
    assert some["total_exact"] is False and 0 < some["total"] < len(both)
    monkeypatch.setattr(reads, "LOOKUP_CAP", N_EVENTS)
    every = run_events(reader, "run_1", type="task.retry", unit="u2", count=True)
    assert (every["total"], every["total_exact"]) == (len(both), True)
    # The whole run's count is kept as events are written: always exact.
    assert run_events(reader, "run_1", count=True)["total"] == N_EVENTS


def test_before_must_be_a_seq(reader: apsw.Connection, events_run: list[EventRow]) -> None:
    for before in (0, -3):
        with pytest.raises(BadParameter, match="before"):
            run_events(reader, "run_1", before=before)


# --- query plans ----------------------------------------------------------------


def _plans_of(conn: apsw.Connection, call: Any) -> list[tuple[str, list[str]]]:
    """Run ``call`` and return the query plan of each SELECT it ran on events/runs."""
    ran: list[tuple[str, Any]] = []

    def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        ran.append((sql, bindings))
        return True

    conn.exec_trace = trace
    try:
        call()
    finally:
        conn.exec_trace = None
    plans = []
    for sql, bindings in ran:
        if sql.startswith("SELECT"):
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, bindings)]
            plans.append((sql, plan))
    return plans


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "events_run_seq"),
        ({"type": "task.started"}, "events_run_type_seq"),
        ({"type": "task."}, "events_run_type_seq"),
        ({"unit": "u2"}, "events_run_unit_seq"),
        ({"unit": "u2", "type": "task."}, "events_run_unit_seq"),
        ({"unit": "u2", "type": "task.retry"}, "events_run_type_seq"),
    ],
)
def test_event_pages_seek_on_an_index_without_sorting(
    reader: apsw.Connection, events_run: list[EventRow], filters: dict[str, Any], index: str
) -> None:
    plans = _plans_of(reader, lambda: run_events(reader, "run_1", after=200, **filters))
    event_plans = [plan for sql, plan in plans if "FROM events" in sql]
    assert event_plans
    for plan in event_plans:
        text = " | ".join(plan)
        assert text.startswith("SEARCH events USING"), text
        assert f"INDEX {index} (run_id=?" in text, text
        assert "SCAN" not in text and "TEMP B-TREE" not in text, text
    seeks = [plan for sql, plan in plans if "ORDER BY seq" in sql]
    assert seeks and all("seq>?" in " | ".join(plan) for plan in seeks)
    backward = _plans_of(reader, lambda: run_events(reader, "run_1", before=200, **filters))
    for sql, plan in backward:
        text = " | ".join(plan)
        assert "SCAN" not in text and "TEMP B-TREE" not in text, (sql, text)


@pytest.mark.parametrize(
    "filters", [{}, {"repo": "/a"}, {"status": "completed"}, {"repo": "/b", "status": "failed"}]
)
def test_run_pages_seek_on_an_index_without_sorting(
    reader: apsw.Connection, many_runs: list[tuple[str, str, str, str]], filters: dict[str, Any]
) -> None:
    cursor = list_runs(reader, limit=10, **filters)["next_cursor"]
    plans = _plans_of(reader, lambda: list_runs(reader, limit=10, cursor=cursor, **filters))
    page_plans = [plan for sql, plan in plans if "ORDER BY" in sql]
    assert len(page_plans) == 1
    text = " | ".join(page_plans[0])
    assert text.startswith("SEARCH runs USING") and "(started_at,id)<(?,?)" in text, text
    assert "TEMP B-TREE" not in text, text
    deeper = list_runs(reader, limit=10, cursor=cursor, **filters)["next_cursor"]
    back = _plans_of(reader, lambda: list_runs(reader, limit=10, before=deeper, **filters))
    (back_page,) = [plan for sql, plan in back if "ORDER BY" in sql]
    text = " | ".join(back_page)
    assert text.startswith("SEARCH runs USING") and "(started_at,id)>(?,?)" in text, text
    assert "TEMP B-TREE" not in text, text
