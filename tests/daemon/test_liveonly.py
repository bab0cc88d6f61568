"""The event buffer of a run that is not recorded (choo_daemon.liveonly.LiveRun)."""

from __future__ import annotations

from collections import deque
from typing import Any

from choo_daemon.liveonly import LiveRun
from choo_daemon.rows import EventRow


def run(keep: int) -> LiveRun:
    summary: dict[str, Any] = {"id": "run_x", "event_count": 0, "last_seq": 0, "resume_count": 0}
    return LiveRun(summary, owner=object(), rows=deque(maxlen=keep))


def row(seq: int, type: str = "task.started", payload: str | None = None) -> EventRow:
    return (
        "run_x",
        seq,
        f"2026-01-01T00:00:{seq % 60:02d}.000Z",
        type,
        "u",
        1,
        None,
        payload,
        None,
    )


def seqs(live: LiveRun, **page: Any) -> list[int]:
    found = live.events_page(**{"type": None, "unit": None, "after": 0, "limit": 1000, **page})
    return [e["seq"] for e in found["events"]]


def test_the_latest_events_are_kept_in_seq_order_each_once() -> None:
    live = run(keep=5)
    assert [live.add(row(s)) for s in (1, 2, 4, 5)] == [True] * 4
    assert live.add(row(3)), "a late event takes its place"
    assert not live.add(row(4)), "a replayed event is kept once"
    assert seqs(live) == [1, 2, 3, 4, 5]
    assert live.add(row(7)) and live.add(row(8))
    assert seqs(live) == [3, 4, 5, 7, 8], "the oldest are let go"
    assert not live.add(row(1)), "older than every event kept"
    assert live.add(row(6))
    assert seqs(live) == [4, 5, 6, 7, 8]
    assert (live.summary["event_count"], live.summary["last_seq"]) == (8, 8)
    assert seqs(live, after=5, limit=2) == [6, 7]


def test_stop_and_resume_markers_are_counted_as_they_arrive() -> None:
    live = run(keep=10)
    live.add(row(1))
    live.add(row(2, "run.stopped", '{"reason":"SIGINT received"}'))
    live.add(row(3, "run.resumed", '{"reason":"again","resume_id":"t"}'))
    assert [(m["seq"], m["type"], m["reason"]) for m in live.detail()["markers"]] == [
        (2, "run.stopped", "SIGINT received"),
        (3, "run.resumed", "again"),
    ]
    assert live.summary["resume_count"] == 1
    assert live.detail()["history"] is False


def test_pages_back_and_the_count_as_the_store_gives_them() -> None:
    live = run(keep=100)
    for s in range(1, 21):
        live.add(row(s, "task.started" if s % 2 else "unit.started"))
    last = live.events_page(type="task.", unit=None, after=0, limit=3, before=10**9, count=True)
    assert [e["seq"] for e in last["events"]] == [15, 17, 19]
    assert (last["next_after"], last["prev_before"]) == (None, 15)
    assert (last["total"], last["total_exact"]) == (10, True)
    back = live.events_page(type="task.", unit=None, after=0, limit=3, before=15)
    assert [e["seq"] for e in back["events"]] == [9, 11, 13]
    assert (back["next_after"], back["prev_before"], back["total"]) == (13, 9, None)
