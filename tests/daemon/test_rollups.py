"""Roll-ups kept at write time (schema v3): attempts, tasks, run totals, across runs."""

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
    EventRow,
    append_events,
    complete_run,
    create_run,
    delete_runs_older_than,
    fold_all,
    fold_pending,
    get_run,
    list_runs,
    migrate,
    open_read_connection,
    open_write_connection,
    run_tasks,
    run_tasks_json,
    run_unit_rollups,
    task_table,
)
from choo_daemon.store.taskreads import MAX_TOOLS
from tests.daemon.attempts import Script


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


@pytest.fixture
def writer(path: Path) -> Iterator[apsw.Connection]:
    conn = open_write_connection(path)
    yield conn
    conn.close()


@pytest.fixture
def reader(writer: apsw.Connection, path: Path) -> Iterator[apsw.Connection]:
    conn = open_read_connection(path)
    yield conn
    conn.close()


def new_run(conn: apsw.Connection, run_id: str = "run_1", *, started: str = "00") -> None:
    with conn:
        create_run(
            conn,
            run_id=run_id,
            repo_path="/repo",
            started_at=f"2026-01-01T00:00:{started}.000Z",
            parallelism=2,
            total_units=2,
        )


def rows(run_id: str, script: Script, first_seq: int = 1) -> list[EventRow]:
    return [
        (
            run_id,
            seq,
            f"2026-01-01T00:01:{seq % 60:02d}.000Z",
            kind,
            unit,
            task,
            None,
            orjson.dumps(payload).decode(),
            None,
        )
        for seq, (kind, unit, task, payload) in enumerate(script.steps, first_seq)
    ]


def write(conn: apsw.Connection, batch: list[EventRow]) -> int:
    """Store a batch, then add up what it queued, as the database process does when idle."""
    with conn:
        stored = append_events(conn, batch)
    fold_all(conn)
    return stored


def retried_task() -> Script:
    """u1 task 1: a failed validation, then a pass (flaky); u2 task 1: passes at once."""
    s = Script()
    s.started("u1", 1, "Add the parser")
    s.attempt("u1", 1, 1, tools=3, passed=False)
    s.retry("u1", 1, 1, "validation_failed")
    s.attempt("u1", 1, 2, tools=1, tokens=(10, 2, 0, 0), cost=0.25, estimated=True)
    s.completed("u1", 1, 2, flaky=True)
    s.started("u2", 1, "Write the docs")
    s.attempt("u2", 1, 1, tools=0, cost=None, validation=None)
    s.completed("u2", 1, 1)
    return s


TOTALS = {
    "input_tokens": 210,
    "output_tokens": 42,
    "cache_read_tokens": 2000,
    "cache_write_tokens": 20,
    "cost_usd": 0.75,
    "cost_estimated": True,
    "agent_ms": 3000,
    "attempts": 3,
    "tool_calls": 4,
}


def test_attempts_tasks_and_run_totals_are_added_up(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    new_run(writer)
    assert write(writer, rows("run_1", retried_task())) == len(retried_task().steps)
    run = get_run(reader, "run_1")
    assert run is not None
    assert run["totals"] == TOTALS
    assert (run["cost_usd"], run["cost_estimated"]) == (0.75, True)
    listed = list_runs(reader)["runs"][0]
    assert (listed["cost_usd"], listed["cost_estimated"]) == (0.75, True)
    tasks = run_tasks(reader, "run_1")["tasks"]
    assert [(t["unit"], t["task"], t["title"], t["status"]) for t in tasks] == [
        ("u1", 1, "Add the parser", "completed"),
        ("u2", 1, "Write the docs", "completed"),
    ]
    u1 = tasks[0]
    assert (u1["stop_reason"], u1["flaky"]) == ("passed_after_retry", True)
    first, second = u1["attempts"]
    assert first == {
        "attempt": 1,
        "started_at": first["started_at"],
        "finished_at": first["finished_at"],
        "stop_reason": "validation_failed",
        "agent_ms": 1000,
        "validation_ms": 30,
        "exit_code": 0,
        "session_id": "sess-u1-1-1",
        "model": "claude-sonnet-4-5",
        "agent_status": "success",
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 10,
        "cost_usd": 0.5,
        "cost_estimated": False,
        "tool_calls": 3,
        "validation_command": "make test",
        "validation_output": "FAILED test_x",
    }
    assert first["started_at"] < first["finished_at"]
    assert "tools" not in first  # only when one task is asked for
    assert (second["stop_reason"], second["cost_estimated"], second["tool_calls"]) == (
        "passed_after_retry",
        True,
        1,
    )
    u2 = tasks[1]["attempts"][0]
    assert (u2["cost_usd"], u2["validation_command"], u2["stop_reason"]) == (None, None, "passed")
    units = run_unit_rollups(reader, "run_1")
    assert units["u1"] == {
        "attempts": 2,
        "input_tokens": 110,
        "output_tokens": 22,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 10,
        "cost_usd": 0.75,
        "cost_estimated": True,
        "tool_calls": 4,
    }
    assert units["u2"]["cost_usd"] == 0 and units["u2"]["attempts"] == 1


HOSTILE = 'quote " back \\ nl\n tab\t nul\x00 bell\x07 é 😀 </script> \u2028'


def test_the_json_text_of_a_runs_tasks_keeps_every_value_exactly(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    """SQLite writes the whole run's TaskPage (run_tasks_json): strings with quotes,
    control characters and astral characters, floats, nulls and booleans come out
    as the values that went in."""
    s = Script()
    s.started("ü1", 1, HOSTILE)
    s.attempt("ü1", 1, 1, cost=0.1 + 0.2, passed=False, validation=HOSTILE)
    s.retry("ü1", 1, 1, "validation_failed")
    s.attempt("ü1", 1, 2, cost=None, estimated=True, validation=None)
    s.completed("ü1", 1, 2, flaky=True)
    new_run(writer)
    write(writer, rows("run_1", s))
    page = orjson.loads(run_tasks_json(reader, "run_1"))
    assert (
        page
        == run_tasks(reader, "run_1")
        == orjson.loads(run_tasks_json(reader, "run_1", unit="ü1"))
    )
    (task,) = page["tasks"]
    assert (task["unit"], task["title"], task["flaky"]) == ("ü1", HOSTILE, True)
    first, second = task["attempts"]
    assert first["validation_command"] == HOSTILE
    assert first["validation_output"] == "FAILED test_x"
    assert first["cost_usd"] == pytest.approx(0.1 + 0.2, rel=1e-15)
    assert (first["cost_estimated"], second["cost_estimated"]) == (False, True)
    assert (second["cost_usd"], second["validation_command"]) == (None, None)
    assert orjson.loads(run_tasks_json(reader, "run_1", unit="nope")) == {
        "run_id": "run_1",
        "tasks": [],
    }


def test_replayed_events_are_not_counted_twice(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    new_run(writer)
    batch = rows("run_1", retried_task())
    # Sent in two parts with a gap, then everything again (a reconnecting
    # client re-sends what was not acked), then once more in one batch
    # holding duplicates; the gap is filled by the replay.
    gap = batch[5]
    write(writer, batch[:5])
    write(writer, batch[6:12])
    write(writer, batch)
    write(writer, batch + batch[3:9])
    write(writer, [gap, gap])
    run = get_run(reader, "run_1")
    assert run is not None
    assert run["totals"] == TOTALS
    assert run["event_count"] == len(batch)
    attempts = run_tasks(reader, "run_1", unit="u1", task=1)["tasks"][0]["attempts"]
    assert [a["tool_calls"] for a in attempts] == [3, 1]
    assert [len(a["tools"]) for a in attempts] == [3, 1]


def test_storing_events_leaves_the_adding_up_for_later(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    """Ingest pays nothing for the roll-ups: they are added up when the database
    process is idle (fold_pending), and a run's rest at its end (complete_run)."""
    new_run(writer)
    new_run(writer, "run_2", started="01")
    for run_id in ("run_1", "run_2"):
        with writer:
            append_events(writer, rows(run_id, retried_task()))

    def totals(run_id: str) -> Any:
        run = get_run(reader, run_id)
        assert run is not None
        return run["totals"]

    assert totals("run_1")["attempts"] == totals("run_2")["attempts"] == 0
    with writer:
        complete_run(
            writer,
            "run_2",
            status="completed",
            completed_at="2026-01-01T00:09:00.000Z",
            completed_units=2,
            failed_units=0,
            blocked_units=0,
        )
    assert totals("run_2") == TOTALS  # whole at its end
    assert totals("run_1")["attempts"] == 0
    assert fold_pending(writer, limit=3) >= 3  # a chunk at a time
    assert fold_all(writer) > 0
    assert totals("run_1") == TOTALS
    assert fold_all(writer) == 0  # nothing is added up twice


def test_a_batch_of_tool_calls_is_one_update_per_attempt(writer: apsw.Connection) -> None:
    new_run(writer)
    s = Script()
    s.started("u1", 1, "t")
    s.attempt("u1", 1, 1, tools=0, validation=None)
    write(writer, rows("run_1", s))
    tools = Script()
    for n in range(200):
        tools.add("task.agent.tool", "u1", 1, attempt=1, tool="Read", target=f"f{n}")
    updates: list[str] = []

    def trace(_cursor: apsw.Cursor, sql: str, _bindings: Any) -> bool:
        if sql.lstrip().upper().startswith("UPDATE"):
            updates.append(sql)
        return True

    writer.exec_trace = trace
    write(writer, rows("run_1", tools, first_seq=len(s.steps) + 1))
    writer.exec_trace = None
    assert len([u for u in updates if "task_attempts" in u]) == 1
    assert len([u for u in updates if "UPDATE tasks" in u]) == 1
    with writer:
        assert writer.execute("SELECT tool_calls FROM runs").get == 200


def test_a_resumed_run_numbers_its_attempts_across_orchestrators(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    new_run(writer)
    first = Script()
    first.started("u1", 1, "Flaky thing")
    first.attempt("u1", 1, 1, tools=2, passed=False)
    first.retry("u1", 1, 1, "validation_failed")
    first.attempt("u1", 1, 2, tools=1, passed=False)  # killed before its end
    write(writer, rows("run_1", first))
    # The second orchestrator starts the task again, its tries from 1.
    second = Script()
    second.started("u1", 1, "Flaky thing")
    second.attempt("u1", 1, 1, tools=4)
    second.completed("u1", 1, 1, flaky=False)
    seq = len(first.steps) + 2  # one seq for the resume marker between them
    write(writer, rows("run_1", second, first_seq=seq))
    task = run_tasks(reader, "run_1", unit="u1", task=1)["tasks"][0]
    assert task["status"] == "completed"
    shown = [
        (a["attempt"], a["stop_reason"], a["tool_calls"], [t["target"] for t in a["tools"]])
        for a in task["attempts"]
    ]
    assert shown == [
        (1, "validation_failed", 2, ["cmd 1.0", "cmd 1.1"]),
        (2, None, 1, ["cmd 2.0"]),
        (3, "passed", 4, ["cmd 1.0", "cmd 1.1", "cmd 1.2", "cmd 1.3"]),
    ]
    run = get_run(reader, "run_1")
    assert run is not None
    assert (run["totals"]["attempts"], run["totals"]["tool_calls"]) == (3, 7)


def test_failed_tasks_and_tasks_without_attempts(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    new_run(writer)
    s = Script()
    s.started("u1", 2, "Never works")
    s.attempt("u1", 2, 1, tools=0, validation=None)
    s.failed("u1", 2, 1, "agent_failed")
    s.started("u1", 3, "Nothing ran")
    s.failed("u1", 3, 0, "cancelled")
    # Events the roll-ups ignore: no unit, no task, a payload that is not an object.
    s.add("task.agent.tool", "u1", 2, attempt=1)
    write(writer, rows("run_1", s))
    write(
        writer,
        [
            ("run_1", 90, "2026-01-01T00:02:00.000Z", "task.started", None, None, None, None, None),
            ("run_1", 91, "2026-01-01T00:02:00.000Z", "task.retry", "u1", 2, None, "[1]", None),
        ],
    )
    tasks = {t["task"]: t for t in run_tasks(reader, "run_1", unit="u1")["tasks"]}
    assert (tasks[2]["status"], tasks[2]["stop_reason"]) == ("failed", "agent_failed")
    assert tasks[2]["attempts"][0]["stop_reason"] == "agent_failed"
    assert tasks[2]["attempts"][0]["tool_calls"] == 1
    assert (tasks[3]["status"], tasks[3]["stop_reason"], tasks[3]["attempts"]) == (
        "failed",
        "cancelled",
        [],
    )


def test_tool_lists_are_capped(writer: apsw.Connection, reader: apsw.Connection) -> None:
    new_run(writer)
    s = Script()
    s.started("u1", 1, "Busy")
    s.attempt("u1", 1, 1, tools=MAX_TOOLS + 7, validation=None)
    write(writer, rows("run_1", s))
    attempt = run_tasks(reader, "run_1", unit="u1", task=1)["tasks"][0]["attempts"][0]
    assert (len(attempt["tools"]), attempt["tools_more"], attempt["tool_calls"]) == (
        MAX_TOOLS,
        7,
        MAX_TOOLS + 7,
    )
    assert attempt["tools"][0] == {
        "seq": 3,
        "tool": "Bash",
        "target": "cmd 1.0",
        "exit_code": 0,
        "is_error": False,
    }


def test_the_cross_run_table_puts_flaky_tasks_first(
    writer: apsw.Connection, reader: apsw.Connection
) -> None:
    for n in range(4):
        run_id = f"run_{n}"
        new_run(writer, run_id, started=f"{n:02d}")
        s = Script()
        s.started("u1", 1, "Steady")
        s.attempt("u1", 1, 1, tokens=(100 * (n + 1), 0, 0, 0), cost=float(n))
        s.completed("u1", 1, 1)
        s.started("u2", 1, "Wobbly")
        if n % 2:
            s.attempt("u2", 1, 1, passed=False)
            s.retry("u2", 1, 1, "validation_failed")
            s.attempt("u2", 1, 2)
            s.completed("u2", 1, 2, flaky=True)
        else:
            s.attempt("u2", 1, 1)
            s.completed("u2", 1, 1)
        write(writer, rows(run_id, s))
    with writer:  # another repository's run is not counted
        create_run(
            writer,
            run_id="run_other",
            repo_path="/other",
            started_at="2026-01-01T00:00:30.000Z",
            parallelism=1,
            total_units=1,
        )
    s = Script()
    s.started("u1", 1, "Steady")
    s.attempt("u1", 1, 1)
    write(writer, rows("run_other", s))
    table = task_table(reader, "/repo", last=3)
    assert table["total"] == 2 and table["repo"] == "/repo"
    wobbly, steady = table["tasks"]
    assert (wobbly["unit"], wobbly["title"], wobbly["flaky_runs"], wobbly["runs"]) == (
        "u2",
        "Wobbly",
        2,
        4,
    )
    assert wobbly["first_try_pass_rate"] == 0.5
    assert [o["run_id"] for o in wobbly["last"]] == ["run_3", "run_2", "run_1"]
    assert wobbly["last"][0] == {
        "run_id": "run_3",
        "started_at": "2026-01-01T00:00:03.000Z",
        "stop_reason": "passed_after_retry",
        "attempts": 2,
    }
    assert (steady["unit"], steady["flaky_runs"], steady["first_try_pass_rate"]) == ("u1", 0, 1.0)
    assert steady["median_tokens"] == 250
    assert steady["median_cost_usd"] == 1.5
    assert steady["median_duration_ms"] == 5000
    assert task_table(reader, "/repo", limit=1, last=3)["tasks"] == [wobbly]
    assert task_table(reader, "/nowhere")["tasks"] == []


def test_retention_deletes_a_runs_roll_ups(writer: apsw.Connection) -> None:
    new_run(writer)
    write(writer, rows("run_1", retried_task()))
    with writer:
        complete_run(
            writer,
            "run_1",
            status="completed",
            completed_at="2026-01-01T01:00:00.000Z",
            completed_units=2,
            failed_units=0,
            blocked_units=0,
        )
        assert delete_runs_older_than(writer, "2027-01-01T00:00:00.000Z", limit=10) == ["run_1"]
        assert writer.execute("SELECT count(*) FROM tasks").get == 0
        assert writer.execute("SELECT count(*) FROM task_attempts").get == 0


def test_a_v2_database_is_upgraded_and_its_events_added_up(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = apsw.Connection(str(path))
    migrate(raw, migrations=MIGRATIONS[:2])  # the file as choo left it before v3
    with raw:
        for n in range(3):
            raw.execute(
                "INSERT INTO runs(id, repo_path, started_at, parallelism, total_units)"
                " VALUES (?, '/repo', ?, 1, 2)",
                (f"run_{n}", f"2026-01-01T00:00:0{n}.000Z"),
            )
            raw.executemany(
                "INSERT INTO events(run_id, seq, time, type, unit, task, pr, payload, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    *rows(f"run_{n}", retried_task()),
                    (f"run_{n}", 999, "2026-01-01T00:09:00.000Z", "unit.completed") + (None,) * 5,
                ],
            )
    raw.close()
    with caplog.at_level(logging.INFO, logger="choo.daemon"):
        writer = open_write_connection(path)
    try:
        assert "adding up the tasks of 3 runs" in caplog.text
        assert "3 of 3 runs done" in caplog.text
        reader = open_read_connection(path)
        for n in range(3):
            run = get_run(reader, f"run_{n}")
            assert run is not None and run["totals"] == TOTALS
        assert task_table(reader, "/repo")["tasks"][0]["flaky_runs"] == 3
        reader.close()
        # New events add to what the upgrade found.
        s = Script()
        s.started("u3", 1, "Later")
        s.attempt("u3", 1, 1, tools=5)
        write(writer, rows("run_0", s, first_seq=1000))
        reader = open_read_connection(path)
        run = get_run(reader, "run_0")
        assert run is not None
        assert run["totals"]["tool_calls"] == TOTALS["tool_calls"] + 5
        reader.close()
    finally:
        writer.close()


def test_v4_gives_the_tasks_of_a_v3_file_their_repository_and_new_tasks_get_it_too(
    path: Path,
) -> None:
    raw = apsw.Connection(str(path))
    migrate(raw, migrations=MIGRATIONS[:3])  # the file as choo left it before v4
    with raw:
        for n, repo in enumerate(("/repo", "/other")):
            create_run(
                raw,
                run_id=f"run_{n}",
                repo_path=repo,
                started_at=f"2026-01-01T00:00:0{n}.000Z",
                parallelism=1,
                total_units=2,
            )
    for n in range(2):
        write(raw, rows(f"run_{n}", retried_task()))
    raw.close()
    writer = open_write_connection(path)  # upgrades to v4
    try:
        s = Script()
        s.started("u3", 1, "Later")
        s.attempt("u3", 1, 1)
        write(writer, rows("run_1", s, first_seq=1000))
        found = writer.execute(
            "SELECT t.run_id, t.unit, t.repo_path, r.repo_path FROM tasks AS t"
            " JOIN runs AS r ON r.id = t.run_id ORDER BY 1, 2"
        ).fetchall()
        assert [(run, unit) for run, unit, _, _ in found] == [
            ("run_0", "u1"), ("run_0", "u2"), ("run_1", "u1"), ("run_1", "u2"), ("run_1", "u3"),
        ]  # fmt: skip
        assert all(kept == repo for _, _, kept, repo in found)
        reader = open_read_connection(path)
        assert [t["unit"] for t in task_table(reader, "/other")["tasks"]] == ["u1", "u2", "u3"]
        assert task_table(reader, "/repo")["total"] == 2
        reader.close()
    finally:
        writer.close()
