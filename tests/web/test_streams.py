"""Server-sent events: a run's stream (replay, then live, then end) and the live view."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

import choo_web.board
import choo_web.feeds
import choo_web.streams
from choo_daemon.daemon import Daemon
from choo_daemon.orphans import stop_run
from protocol.events import UNIT_STATUSES, fold_units
from tests.web.support import SSE, History, ev, open_sse, varied

STREAM = "/api/history/runs/{}/stream"


async def test_replay_after_last_event_id_then_live_then_end(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_s")
    await history.send(varied("run_s", range(1, 11)))
    async with open_sse(web, STREAM.format("run_s"), {"Last-Event-ID": "5"}) as sse:
        assert sse.headers["cache-control"] == "no-cache"
        first = await sse.block()
        assert first is not None and first.retry == 2000
        replayed = [await sse.next() for _ in range(5)]
        assert [m.id for m in replayed if m] == ["6", "7", "8", "9", "10"]
        assert replayed[0] is not None and replayed[0].data == {
            "seq": 6,
            "time": varied("run_s", [6])[0]["time"],
            "type": "task.started",
            "unit": "u1",
            "task": 2,
            "pr": None,
            "payload": {"n": 6},
            "error": None,
        }
        # Events committed while the stream is open arrive live, in order.
        for seq in range(11, 21):
            await history.send(varied("run_s", [seq]))
            msg = await sse.next()
            assert msg is not None and msg.event == "event" and msg.id == str(seq)
        await history.send(varied("run_s", range(21, 31)), wait=False)
        await history.complete("run_s", "failed", done=1)
        seqs, end = await sse.events_until_end()
        assert seqs == list(range(21, 31))
        assert end is not None and end.event == "end" and end.id is None
        assert end.data["id"] == "run_s" and end.data["status"] == "failed"
        assert end.data["completed_units"] == 1 and end.data["event_count"] == 30
        assert await sse.block() is None  # closed after "end"


async def test_after_parameter_and_last_event_id_precedence(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_p")
    await history.send(varied("run_p", range(1, 6)))
    await history.complete("run_p")
    async with open_sse(web, STREAM.format("run_p") + "?after=3") as sse:
        assert (await sse.events_until_end())[0] == [4, 5]
    # The browser's Last-Event-ID (sent on reconnect) wins over the URL's after.
    url = STREAM.format("run_p") + "?after=1"
    async with open_sse(web, url, {"Last-Event-ID": "4"}) as sse:
        assert (await sse.events_until_end())[0] == [5]
    # A prefix of the run id works too.
    async with open_sse(web, STREAM.format("run_")) as sse:
        seqs, end = await sse.events_until_end()
        assert seqs == [1, 2, 3, 4, 5] and end is not None


async def test_a_finished_run_replays_every_page_then_ends(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_big")
    await history.send(varied("run_big", range(1, 2501)))
    await history.complete("run_big")
    async with open_sse(web, STREAM.format("run_big")) as sse:
        seqs, end = await sse.events_until_end()
    assert seqs == list(range(1, 2501))  # three store pages, no gap, no repeat
    assert end is not None and end.data["status"] == "completed"


async def test_events_flowing_while_the_stream_opens_are_sent_once(
    web: httpx.AsyncClient, history: History
) -> None:
    total = 6000
    await history.start("run_flow")
    half_sent = trio.Event()

    async def produce() -> None:
        for first in range(1, total + 1, 50):
            await history.send(varied("run_flow", range(first, first + 50)))
            if first > total // 3:
                half_sent.set()
        await history.complete("run_flow")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        await half_sent.wait()
        async with open_sse(web, STREAM.format("run_flow")) as sse:
            seqs, end = await sse.events_until_end(timeout=60)
    assert seqs == list(range(1, total + 1))
    assert end is not None and end.data["event_count"] == total


async def test_an_event_committed_between_subscribing_and_the_backlog_is_sent_once(
    web: httpx.AsyncClient, history: History, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream subscribes, then events 11..20 commit, then the backlog is read:
    they are both in the backlog and in the subscription, and must appear once."""
    await history.start("run_race")
    await history.send(varied("run_race", range(1, 11)))
    read_page = daemon.reader.run_events
    calls = 0

    async def commit_then_read(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            assert daemon.hub.statistics()["run_subscribers"] == 1
            await history.send(varied("run_race", range(11, 21)))
        return await read_page(*args, **kwargs)

    monkeypatch.setattr(daemon.reader, "run_events", commit_then_read)
    async with open_sse(web, STREAM.format("run_race")) as sse:
        seqs = [int(m.id) for m in [await sse.next() for _ in range(20)] if m and m.id]
        assert seqs == list(range(1, 21))
        await history.send(varied("run_race", range(21, 23)))
        await history.complete("run_race")
        rest, end = await sse.events_until_end()
    assert rest == [21, 22] and end is not None


async def test_markers_written_by_the_daemon_reach_an_open_stream(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_m")
    async with open_sse(web, STREAM.format("run_m")) as sse:
        await history.send(varied("run_m", range(1, 4)))
        # run.resume appends its marker in the daemon: it is no event frame.
        assert await history.resume("run_m", token="tok") == 4
        await history.send(varied("run_m", range(5, 7)))
        got = [await sse.next() for _ in range(6)]
        assert [m.data["seq"] for m in got if m] == [1, 2, 3, 4, 5, 6]
        assert got[3] is not None and got[3].data["type"] == "run.resumed"
        await history.complete("run_m", "stopped")
        seqs, end = await sse.events_until_end()
        assert seqs == [] and end is not None and end.data["status"] == "stopped"


async def test_a_resumed_run_streams_its_whole_history(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_r")
    await history.send(varied("run_r", range(1, 4)))
    await history.complete("run_r", "stopped")
    await history.resume("run_r", token="t")
    async with open_sse(web, STREAM.format("run_r")) as sse:
        got = [await sse.next() for _ in range(4)]
        assert [(m.data["seq"], m.data["type"]) for m in got if m][3] == (4, "run.resumed")
        await history.send(varied("run_r", [5]))
        await history.complete("run_r")
        seqs, end = await sse.events_until_end()
        assert seqs == [5] and end is not None and end.data["resume_count"] == 1


async def test_idle_streams_send_heartbeats(
    web: httpx.AsyncClient, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choo_web.streams, "HEARTBEAT_S", 0.05)
    await history.start("run_hb")
    for url in (STREAM.format("run_hb"), "/api/live"):
        async with open_sse(web, url) as sse:
            beats = 0
            while beats < 2:
                msg = await sse.block(timeout=5)
                assert msg is not None
                beats += msg.comments == ["hb"]


@pytest.mark.parametrize(
    ("headers", "query", "names"),
    [
        ({"Last-Event-ID": "abc"}, "", ["Last-Event-ID", "'abc'"]),
        ({"Last-Event-ID": "-1"}, "", ["Last-Event-ID", "-1"]),
        ({}, "?after=-1", ["after", "-1"]),
        ({}, "?after=1e3", ["after", "'1e3'"]),
    ],
)
async def test_a_bad_resume_point_is_400(
    web: httpx.AsyncClient,
    history: History,
    headers: dict[str, str],
    query: str,
    names: list[str],
) -> None:
    await history.start("run_bad")
    response = await web.get(STREAM.format("run_bad") + query, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_parameter"
    for name in names:
        assert name in error["message"]


async def test_head_of_a_stream_is_headers_only(web: httpx.AsyncClient, history: History) -> None:
    await history.start("run_head")
    for url in (STREAM.format("run_head"), "/api/live"):
        response = await web.head(url)
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-type"].startswith("text/event-stream")


async def live_until(sse: SSE, done: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
    """(event name, data) of each /api/live message, up to the first that is ``done``."""
    got: list[tuple[str, Any]] = []
    while not got or not done(*got[-1]):
        msg = await sse.next()
        assert msg is not None and msg.event is not None
        got.append((msg.event, msg.data))
    return got


def about(kind: str, data: Any) -> str:
    return str(data["run_id"] if kind == "run.state" else data["run"]["id"])


def unit_counts(total: int, **counts: int) -> dict[str, int]:
    statuses = dict.fromkeys(UNIT_STATUSES, 0) | counts
    statuses["pending"] = total - sum(counts.values())
    return {"total": total, **statuses}


async def test_live_announces_runs_of_the_repository_and_their_state(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_old", repo="/a")  # running before the client came
    await history.start("run_other_old", repo="/b")
    async with open_sse(web, "/api/live?repo=/a") as sse:
        ready = await sse.next()
        assert ready is not None and ready.event == "ready"
        assert [run["id"] for run in ready.data["runs"]] == ["run_old"]
        assert ready.data["runs"][0]["live"] == {
            "run_id": "run_old",
            "status": "running",
            "event_count": 0,
            "last_seq": 0,
            "units": unit_counts(3),
            "last_event": None,
        }

        await history.start("run_b", repo="/b")
        await history.start("run_a", repo="/a", started=5)
        await history.send(varied("run_b", range(1, 4)))
        await history.send(varied("run_a", range(1, 4)))
        await history.send(varied("run_old", [1]))
        await history.send(varied("run_other_old", [1]))
        await history.send(varied("run_a", [2, 3, 4]))  # 2 and 3 again: a client's replay
        await history.complete("run_b")
        await history.complete("run_a", done=2)
        got: list[tuple[str, Any]] = []

        def done(kind: str, data: Any) -> bool:
            old = [d for k, d in got if k == "run.state" and d["run_id"] == "run_old"]
            return any(k == "run.finished" for k, _ in got) and bool(old)

        while not got or not done(*got[-1]):
            got += await live_until(sse, lambda kind, data: True)
    assert {about(kind, data) for kind, data in got} == {"run_a", "run_old"}
    run_a = [(kind, data) for kind, data in got if about(kind, data) == "run_a"]
    assert run_a[0][0] == "run.started" and run_a[-1][0] == "run.finished"
    assert {kind for kind, _ in run_a[1:-1]} == {"run.state"}
    assert run_a[-1][1]["run"]["completed_units"] == 2
    last = run_a[-2][1]
    assert (last["last_seq"], last["event_count"], last["status"]) == (4, 4, "running")
    assert last["units"] == unit_counts(3, completed=1)  # seq 4 is u2's unit.completed
    assert last["last_event"] == {
        "seq": 4,
        "time": varied("run_a", [4])[0]["time"],
        "type": "unit.completed",
        "unit": "u2",
        "task": 0,
    }
    old = [data for kind, data in got if kind == "run.state" and data["run_id"] == "run_old"]
    assert (old[-1]["last_seq"], old[-1]["event_count"]) == (1, 1)


async def test_live_without_a_filter_sees_every_run(
    web: httpx.AsyncClient, history: History
) -> None:
    async with open_sse(web, "/api/live") as sse:
        ready = await sse.next()
        assert ready is not None and ready.data == {"runs": []}
        await history.start("run_x", repo="/x")
        await history.send([ev("run_x", 1, "orch.started", payload={"units": 2})])
        await history.complete("run_x", "completed")
        got = await live_until(sse, lambda kind, data: kind == "run.finished")
    kinds = [kind for kind, _ in got]
    # The board reads a run that starts back from the store: on a busy machine
    # its event is committed by then, and counted in run.started; otherwise it
    # comes as a run.state of its own.
    assert kinds in (["run.started", "run.state", "run.finished"], ["run.started", "run.finished"])
    started, finished = got[0][1], got[-1][1]
    assert started["run"]["status"] == "running" and started["run"]["repo_path"] == "/x"
    state = got[1][1] if len(got) == 3 else started["run"]["live"]
    assert started["run"]["live"]["last_seq"] == (0 if len(got) == 3 else 1)
    assert state["run_id"] == "run_x" and state["last_seq"] == 1
    assert state["last_event"]["type"] == "orch.started"
    assert finished["run"]["status"] == "completed"


async def test_live_coalesces_many_events_into_few_updates_with_the_final_state(
    web: httpx.AsyncClient, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held for an hour after the first update, the run's state goes out again only
    when it finishes (its last state before run.finished): 40 commits, 2 updates."""
    monkeypatch.setattr(choo_web.board, "COALESCE_S", 3600.0)
    await history.start("run_c", units=3)
    async with open_sse(web, "/api/live") as sse:
        ready = await sse.next()
        assert ready is not None and [r["id"] for r in ready.data["runs"]] == ["run_c"]
        for first in range(1, 2001, 50):
            await history.send(varied("run_c", range(first, first + 50)))
        await history.complete("run_c", done=2)
        got = await live_until(sse, lambda kind, data: kind == "run.finished")
    states = [data for kind, data in got if kind == "run.state"]
    assert [kind for kind, _ in got] == ["run.state"] * len(states) + ["run.finished"]
    assert 1 <= len(states) <= 2
    final = states[-1]
    assert (final["last_seq"], final["event_count"], final["status"]) == (2000, 2000, "running")
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = (await web.get(f"/api/history/runs/run_c/events?after={after}&limit=1000")).json()
        events += page["events"]
        after = page["next_after"]
    folded = Counter(u["status"] for u in fold_units([], events, "running"))
    assert final["units"] == unit_counts(3, **folded)
    assert final["last_event"]["seq"] == 2000
    assert got[-1][1]["run"]["event_count"] == 2000


async def test_a_stalled_run_stream_gets_a_catchup_marker_not_a_drop(
    web: httpx.AsyncClient, history: History, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choo_web.feeds, "RING_EVENTS", 500)
    total = 50_000
    text = "output line that takes some room " * 10
    await history.start("run_slow")
    await history.send(varied("run_slow", [1]))
    async with (
        open_sse(web, STREAM.format("run_slow")) as stalled,
        open_sse(web, "/api/live") as stalled_live,
    ):
        # Each stream subscribes before its first message; after that, neither
        # is read while 50k events are ingested.
        first, ready = await stalled.block(), await stalled_live.next()
        assert first is not None and first.retry and ready is not None and ready.event == "ready"
        with trio.fail_after(120):
            for first in range(2, total + 1, 1000):
                last = min(first + 1000, total + 1)
                events = [ev("run_slow", s, payload={"text": text}) for s in range(first, last)]
                await history.send(events)
        assert daemon.writer.events_stored == total
        await history.complete("run_slow")
        # The stalled stream goes on: what it holds, a catchup, the newest events, end.
        got, end = await stalled.messages_until_end(timeout=60)
        assert end is not None and end.data["event_count"] == total
        received: list[int] = []
        gaps: list[tuple[int, int]] = []
        for msg in got:
            if msg.event == "catchup":
                assert msg.id is None and msg.data["after"] == (received[-1] if received else 0)
                gaps.append((msg.data["after"], msg.data["next"]))
            else:
                assert msg.event == "event" and msg.id == str(msg.data["seq"])
                received.append(msg.data["seq"])
        assert gaps, "the stream fell behind its feed"
        assert received == sorted(set(received)) and received[0] == 1
        # The gaps, fetched through paging, complete the run.
        for after, next_seq in gaps:
            assert next_seq > after
            page = (
                await web.get(f"/api/history/runs/run_slow/events?after={after}&limit=1000")
            ).json()
            assert page["events"][0]["seq"] == after + 1
            received += list(range(after + 1, next_seq))
        assert sorted(received) == list(range(1, total + 1))
        # The live view, stalled too, was not dropped either: it ends with the run.
        final = await live_until(stalled_live, lambda kind, data: kind == "run.finished")
        assert final[-1][1]["run"]["event_count"] == total
    stats = daemon.hub.statistics()
    assert stats["subscribers_dropped"] == 0


async def test_shutdown_ends_open_streams(
    web: httpx.AsyncClient, history: History, daemon: Daemon
) -> None:
    await history.start("run_down")
    async with (
        open_sse(web, STREAM.format("run_down")) as run_sse,
        open_sse(web, "/api/live") as live_sse,
    ):
        assert await run_sse.block() is not None  # "retry": subscribed
        assert await live_sse.next() is not None  # "ready": subscribed
        assert daemon.hub.statistics()["subscribers"] == 2
        daemon.request_shutdown()
        with trio.fail_after(1.5):  # well before hypercorn's graceful timeout
            assert (await run_sse.events_until_end())[1] is None
            assert await live_sse.next() is None


async def test_a_run_stopped_by_the_daemon_itself_ends_its_streams(
    web: httpx.AsyncClient, history: History, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No commit announces it (the daemon stops runs whose client vanished): the
    streams find out at their next heartbeat."""
    monkeypatch.setattr(choo_web.streams, "HEARTBEAT_S", 0.05)
    await history.start("run_lost")
    await history.send(varied("run_lost", range(1, 3)))
    async with (
        open_sse(web, STREAM.format("run_lost")) as run_sse,
        open_sse(web, "/api/live") as live_sse,
    ):
        ready = await live_sse.next()
        assert ready is not None and [r["id"] for r in ready.data["runs"]] == ["run_lost"]

        # As the orphan watch does it (in the database process, hence by name).
        assert await daemon.writer.run_in_writer(stop_run, "run_lost", "client gone") == 3
        seqs, end = await run_sse.events_until_end()
        assert seqs == [1, 2, 3] and end is not None and end.data["status"] == "stopped"
        finished = await live_sse.next()
        assert finished is not None and finished.event == "run.finished"
        assert finished.data["run"]["markers"][0]["reason"] == "client gone"


async def test_a_client_leaving_mid_replay_is_unsubscribed(
    web: httpx.AsyncClient, history: History, daemon: Daemon
) -> None:
    await history.start("run_leave")
    await history.send(varied("run_leave", range(1, 5001)))
    for url in (STREAM.format("run_leave"), "/api/live"):
        async with open_sse(web, url) as sse:
            assert await sse.next() is not None
            assert daemon.hub.statistics()["subscribers"] == 1
        with trio.fail_after(10):
            # The server notices the hang-up on its own time; the hub has no event for it.
            while daemon.hub.statistics()["subscribers"]:
                await trio.sleep(0.01)
