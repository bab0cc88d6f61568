"""Server-sent events: a run's stream (replay, then live, then end) and the live view."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

import choo_web.streams
from choo_daemon.daemon import Daemon
from choo_daemon.orphans import stop_run
from tests.web.support import History, ev, open_sse, varied

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


async def test_live_announces_runs_of_the_repository_and_their_events(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_old", repo="/a")  # running before the client came
    await history.start("run_other_old", repo="/b")
    async with open_sse(web, "/api/live?repo=/a") as sse:
        ready = await sse.next()
        assert ready is not None and ready.event == "ready"
        assert [run["id"] for run in ready.data["runs"]] == ["run_old"]

        await history.start("run_b", repo="/b")
        await history.start("run_a", repo="/a", started=5)
        await history.send(varied("run_b", range(1, 4)))
        await history.send(varied("run_a", range(1, 4)))
        await history.send(varied("run_old", [1]))
        await history.send(varied("run_other_old", [1]))
        await history.send(varied("run_a", [2, 3, 4]))  # 2 and 3 again: a client's replay
        await history.complete("run_b")
        await history.complete("run_a", done=2)

        got: list[tuple[str, str, int | None]] = []
        while not got or got[-1][0] != "run.finished":
            msg = await sse.next()
            assert msg is not None and msg.event is not None
            if msg.event == "event":
                got.append(("event", msg.data["run_id"], msg.data["event"]["seq"]))
            else:
                got.append((msg.event, msg.data["run"]["id"], None))
    assert got == [
        ("run.started", "run_a", None),
        ("event", "run_a", 1),
        ("event", "run_a", 2),
        ("event", "run_a", 3),
        ("event", "run_old", 1),
        ("event", "run_a", 4),
        ("run.finished", "run_a", None),
    ]


async def test_live_without_a_filter_sees_every_run(
    web: httpx.AsyncClient, history: History
) -> None:
    async with open_sse(web, "/api/live") as sse:
        ready = await sse.next()
        assert ready is not None and ready.data == {"runs": []}
        await history.start("run_x", repo="/x")
        await history.send([ev("run_x", 1, "orch.started", payload={"units": 2})])
        await history.complete("run_x", "completed")
        started, event, finished = [await sse.next() for _ in range(3)]
    assert started is not None and started.event == "run.started"
    assert started.data["run"]["status"] == "running" and started.data["run"]["repo_path"] == "/x"
    assert event is not None and event.event == "event" and event.data["run_id"] == "run_x"
    assert event.data["event"]["type"] == "orch.started"
    assert event.data["event"]["payload"] == {"units": 2}
    assert finished is not None and finished.event == "run.finished"
    assert finished.data["run"]["status"] == "completed"


async def test_a_stalled_subscriber_is_dropped_and_ingest_goes_on(
    web: httpx.AsyncClient, history: History, daemon: Daemon
) -> None:
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
        assert daemon.hub.statistics()["subscribers"] == 2
        with trio.fail_after(120):
            for first in range(2, total + 1, 1000):
                last = min(first + 1000, total + 1)
                events = [ev("run_slow", s, payload={"text": text}) for s in range(first, last)]
                await history.send(events)
        stats = daemon.hub.statistics()
        assert stats["subscribers_dropped"] == 2 and stats["subscribers"] == 0
        assert daemon.writer.events_stored == total
        # The stalled stream ends (no "end": the run goes on) ...
        seqs, end = await stalled.events_until_end(timeout=60)
        assert end is None and seqs == list(range(1, len(seqs) + 1)) and len(seqs) < total
        assert await stalled_live.next(timeout=30) is not None
    # ... and a reconnect with Last-Event-ID replays the rest from the store.
    headers = {"Last-Event-ID": str(seqs[-1])}
    async with open_sse(web, STREAM.format("run_slow"), headers) as sse:
        await history.complete("run_slow")
        rest, end = await sse.events_until_end(timeout=60)
    assert rest == list(range(seqs[-1] + 1, total + 1)) and end is not None


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
