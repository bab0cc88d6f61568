"""Full-text search over the events' text (choo_daemon/store/search.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest

from choo_daemon.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    BadCursor,
    BadParameter,
    CatchUp,
    append_events,
    complete_run,
    create_run,
    delete_runs_older_than,
    index_pending,
    mark_stopped,
    migrate,
    open_read_connection,
    open_write_connection,
    parse_query,
    retract_held_marker,
    schema_version,
    search_events,
)
from choo_daemon.store.schema import _v5_search
from choo_daemon.store.search import event_text, indexed_id, run_tag
from choo_daemon.store.searchreads import snippet

# The schema version just before search's migration (the lead may renumber).
BEFORE_SEARCH = MIGRATIONS.index(_v5_search)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


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


def _event(run: str, seq: int, kind: str, payload: dict[str, Any] | None, error: str | None = None):  # type: ignore[no-untyped-def]
    text = None if payload is None else orjson.dumps(payload).decode()
    return (run, seq, f"2026-01-20T14:31:{seq % 60:02d}.000Z", kind, "auth", 1, None, text, error)


def _run(
    conn: apsw.Connection,
    run: str,
    events: list[tuple[str, dict[str, Any] | None, str | None]],
    *,
    repo: str = "/repo",
    started: str = "2026-01-20T14:30:52.123Z",
) -> None:
    with conn:
        create_run(
            conn, run_id=run, repo_path=repo, started_at=started, parallelism=1, total_units=1
        )
        append_events(
            conn, [_event(run, i, kind, p, e) for i, (kind, p, e) in enumerate(events, start=1)]
        )


SAMPLE: list[tuple[str, dict[str, Any] | None, str | None]] = [
    ("task.started", {"title": "Add the login form"}, None),
    (
        "task.validation.fail",
        {"command": "pytest -q", "output_tail": "E   KeyError: 'token'"},
        None,
    ),
    ("task.agent.tool", {"tool": "Bash", "target": "grep -rn token src/"}, None),
    ("task.failed", {"title": "Add the login form", "reason": "validation failed"}, "boom"),
    ("unit.started", None, None),
]


def _index_all(conn: apsw.Connection) -> None:
    while index_pending(conn):
        pass


def _seqs(reader: apsw.Connection, q: str, run: str = "run_a") -> list[int]:
    page = search_events(reader, q, run=run)
    seqs: list[int] = page["seqs"]
    return seqs


def test_v5_indexes_an_existing_history_behind_with_progress_in_the_log(
    db_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = apsw.Connection(str(db_path))
    migrate(conn, migrations=MIGRATIONS[:BEFORE_SEARCH])
    _run(conn, "run_a", SAMPLE)
    _run(conn, "run_b", SAMPLE[:2], started="2026-01-21T00:00:00.000Z")
    conn.close()

    writer = open_write_connection(db_path)
    reader = open_read_connection(db_path)
    try:
        assert schema_version(writer) == SCHEMA_VERSION
        assert search_events(reader, "token")["unindexed"] == 7  # not seen until indexed
        monkeypatch.setattr(CatchUp, "LOG_BACKLOG", 5)  # a large backlog, in small
        catch_up = CatchUp()
        with caplog.at_level(logging.INFO, logger="choo.daemon"):
            while catch_up.step(writer, 2):  # what the database process does when idle
                pass
        assert [r.getMessage() for r in caplog.records][:3] == [
            "search: indexing 7 events not indexed yet (search does not see them until then)",
            "search: indexed 2 of 7 events (28 %)",
            "search: indexed 4 of 7 events (57 %)",
        ]
        assert caplog.records[-1].getMessage().startswith("search: index caught up, 7 events")
        assert indexed_id(writer) == writer.execute("SELECT max(id) FROM events").get
        assert _seqs(reader, "token") == [2, 3]
        found = search_events(reader, "login")
        assert [(m["run_id"], m["seq"]) for m in found["matches"]] == [
            ("run_b", 1),
            ("run_a", 4),
            ("run_a", 1),
        ]
        assert found["unindexed"] == 0
    finally:
        reader.close()
        writer.close()


def test_new_events_are_searchable_once_indexed_behind_the_writer(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    _run(writer, "run_a", SAMPLE)
    before = search_events(reader, "KeyError")
    assert before["matches"] == []
    assert before["unindexed"] == 5
    assert index_pending(writer, 2) == 2  # a chunk at a time
    _index_all(writer)
    after = search_events(reader, "KeyError")
    assert [m["seq"] for m in after["matches"]] == [2]
    assert after["unindexed"] == 0
    assert index_pending(writer) == 0


def test_retention_takes_deleted_runs_out_of_the_index(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    _run(writer, "run_a", SAMPLE)
    _run(writer, "run_b", SAMPLE, started="2026-03-01T00:00:00.000Z")
    with writer:
        complete_run(
            writer, "run_a", status="completed", completed_at="2026-01-20T15:00:00.000Z",
            completed_units=1, failed_units=0, blocked_units=0,
        )  # fmt: skip
    _index_all(writer)
    with writer:
        assert delete_runs_older_than(writer, "2026-02-01T00:00:00.000Z", limit=10) == ["run_a"]
    tag = run_tag("run_a")
    left = writer.execute(
        "SELECT count(*) FROM event_search WHERE event_search MATCH ?", (f'tags : "{tag}"',)
    ).get
    assert left == 0
    assert [m["run_id"] for m in search_events(reader, "login")["matches"]] == ["run_b", "run_b"]


def test_a_retracted_marker_leaves_the_index_and_its_reused_id_is_indexed(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    _run(writer, "run_a", SAMPLE)
    with writer:
        mark_stopped(writer, "run_a", time="2026-01-20T15:00:00.000Z", reason="orchestrator gone")
    _index_all(writer)
    assert _seqs(reader, "orchestrator gone") == [6]
    with writer:
        retract_held_marker(writer, "run_a")
        # SQLite gives the freed highest id to the next event.
        append_events(writer, [_event("run_a", 6, "task.failed", {"reason": "disk quota"})])
    assert _seqs(reader, "orchestrator") == []
    _index_all(writer)
    assert _seqs(reader, "quota") == [6]


def test_within_a_run_matches_come_in_seq_order_with_every_seq_and_pages(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    _run(writer, "run_a", SAMPLE * 3)
    _index_all(writer)
    first = search_events(reader, "login", run="run_a", limit=4)
    assert first["seqs"] == [1, 4, 6, 9, 11, 14]
    assert first["total"] == 6 and not first["truncated"]
    assert [m["seq"] for m in first["matches"]] == [1, 4, 6, 9]
    second = search_events(reader, "login", run="run_a", limit=4, cursor=first["next_cursor"])
    assert [m["seq"] for m in second["matches"]] == [11, 14]
    assert second["next_cursor"] is None


def test_across_runs_newest_first_one_repository_and_pages(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    _run(writer, "run_a", SAMPLE)
    _run(writer, "run_b", SAMPLE, repo="/other", started="2026-01-21T00:00:00.000Z")
    _index_all(writer)
    page = search_events(reader, "token", limit=3)
    assert [(m["run_id"], m["seq"]) for m in page["matches"]] == [
        ("run_b", 3),
        ("run_b", 2),
        ("run_a", 3),
    ]
    rest = search_events(reader, "token", limit=3, cursor=page["next_cursor"])
    assert [(m["run_id"], m["seq"]) for m in rest["matches"]] == [("run_a", 2)]
    assert rest["next_cursor"] is None
    mine = search_events(reader, "token", repo="/repo")
    assert {m["repo_path"] for m in mine["matches"]} == {"/repo"}
    assert len(mine["matches"]) == 2
    assert search_events(reader, "token", repo="/nowhere")["matches"] == []


def test_query_syntax_words_phrases_prefix_or_and_exclusion(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    _run(writer, "run_a", SAMPLE)
    _index_all(writer)
    assert _seqs(reader, "login form") == [1, 4]
    assert _seqs(reader, '"form login"') == []
    assert _seqs(reader, "log*") == [1, 4]
    assert _seqs(reader, "keyerror OR bash") == [2, 3]
    assert _seqs(reader, "login -validation") == [1]
    assert _seqs(reader, "boom") == [4]  # the event's error
    # Punctuation only separates words: no FTS5 syntax reaches SQLite.
    assert _seqs(reader, "'token' ^ ( ) {text}: * \"\" NEAR(") == []  # "near", "text" too
    assert _seqs(reader, "'token' ^ ( ) : * \"\"") == [2, 3]


@pytest.mark.parametrize(
    ("q", "why"),
    [
        ('"unclosed', 'a closing " is missing'),
        ("<>", "at least one word"),
        ("-token", "at least one word"),
        ("", "at least one word"),
    ],
)
def test_a_query_with_nothing_to_search_for_is_a_bad_parameter(q: str, why: str) -> None:
    with pytest.raises(BadParameter, match=why):
        parse_query(q)


def test_bad_limit_and_cursor_are_refused(reader: apsw.Connection) -> None:
    with pytest.raises(BadParameter, match="limit"):
        search_events(reader, "x", limit=0)
    with pytest.raises(BadCursor):
        search_events(reader, "x", cursor="abc")


def test_snippets_are_plain_text_with_the_offsets_of_the_matches() -> None:
    text = event_text(
        orjson.dumps({"title": "<img src=x onerror=alert(1)>", "output_tail": "a\nb"}).decode(),
        None,
    )
    assert text == "<img src=x onerror=alert(1)>\na\nb"
    terms = parse_query("onerror img").terms
    got = snippet(text, terms)
    assert got["text"] == "<img src=x onerror=alert(1)> a b"
    assert [got["text"][s : s + n] for s, n in got["matches"]] == ["img", "onerror"]
    long = "x " * 200 + "needle" + " y" * 200
    cut = snippet(long, parse_query("needle").terms)
    assert cut["text"].startswith("…") and cut["text"].endswith("…")
    assert [cut["text"][s : s + n] for s, n in cut["matches"]] == ["needle"]
