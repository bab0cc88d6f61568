"""Runs that are shown live but not recorded (``run.start`` with ``history: false``).

The daemon keeps them in memory while they run: the live view and the run's
own routes show them, and nothing of them reaches the database files.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
import pytest
import trio

from choo.api import HistoryAPI, HistoryError
from choo.export import write_export
from choo_daemon.daemon import Daemon
from choo_daemon.liveonly import LiveOnlyReader
from protocol.home import Home, read_token
from tests.daemon.test_secrets import database_bytes
from tests.daemon.test_session import Peer
from tests.web.support import SSE, TYPES, History, at, open_sse, varied

RUN = "run_20260301_120000_nohi"
GRAPH = {
    "nodes": [{"id": "u1"}, {"id": "u2"}],
    "edges": [{"from": "u2", "to": "u1"}],
    "levels": [["u1"], ["u2"]],
}


def live_start(run: str, req: int = 1, repo: str = "/repo/live") -> dict[str, Any]:
    return {
        "t": "run.start",
        "req": req,
        "run": run,
        "repo_path": repo,
        "started_at": at(0),
        "parallelism": 2,
        "total_units": 2,
        "tasks_dir": f"{repo}/specs/tasks",
        "history": False,
    }


def marked(run: str, seqs: range, marker: str) -> list[dict[str, Any]]:
    """Events whose payloads, errors and units carry ``marker``."""
    events = varied(run, seqs, units=2)
    for e in events:
        e["payload"] = {"output_tail": f"{marker} #{e['seq']}", "n": e["seq"]}
        e["error"] = f"error text {marker}"
    return events


def complete(req: int, error: str | None = None) -> dict[str, Any]:
    return {
        "t": "run.complete",
        "req": req,
        "run": RUN,
        "status": "failed",
        "completed_at": at(90),
        "completed_units": 1,
        "failed_units": 1,
        "blocked_units": 0,
        "error": error,
    }


async def reply(peer: Peer, req: int) -> dict[str, Any]:
    """The reply to ``req`` (acks before it are skipped)."""
    while True:
        msg = await peer.receive()
        if msg.get("req") == req:
            return msg
        assert msg["t"] == "ack", msg


async def acked(peer: Peer, run: str, seq: int) -> None:
    while True:
        msg = await peer.receive()
        assert msg["t"] == "ack" and msg["run"] == run, msg
        if msg["seq"] >= seq:
            return


async def next_live(sse: SSE) -> tuple[str, Any]:
    msg = await sse.next()
    assert msg is not None and msg.event is not None
    return msg.event, msg.data


async def test_a_run_without_history_is_live_then_gone_and_never_stored(
    daemon: Daemon, home: Home, web: httpx.AsyncClient, history: History
) -> None:
    marker = f"NOHIST-{uuid.uuid4().hex}"
    # A recorded run beside it, so that the database and its WAL are written.
    await history.start("run_recorded")
    await history.send(varied("run_recorded", range(1, 6)))

    async with open_sse(web, "/api/live") as live:
        kind, ready = await next_live(live)
        assert kind == "ready" and [r["id"] for r in ready["runs"]] == ["run_recorded"]

        peer = await Peer.connect(home)
        await peer.send(live_start(RUN))
        started = await reply(peer, 1)
        assert started == {"t": "ok", "req": 1, "data": {"run": RUN, "created": True}}
        await peer.send({"t": "run.graph", "req": 2, "run": RUN, **GRAPH})
        assert (await reply(peer, 2))["t"] == "ok"
        # Events are acked at once: there is nothing to make durable.
        await peer.send(*marked(RUN, range(1, 31), marker))
        await acked(peer, RUN, 30)

        kind, data = await next_live(live)
        assert kind == "run.started" and data["run"]["id"] == RUN
        assert data["run"]["history"] is False and data["run"]["status"] == "running"
        # Its state, coalesced: the last one counts all 30 events.
        state: dict[str, Any] = {"last_seq": 0}
        while state["last_seq"] < 30:
            kind, state = await next_live(live)
            assert kind == "run.state" and state["run_id"] == RUN, (kind, state)
        assert (state["event_count"], state["last_event"]["seq"]) == (30, 30)

        # Its own routes answer from memory while it runs.
        detail = (await web.get(f"/api/history/runs/{RUN}")).json()
        assert detail["history"] is False and detail["has_graph"] is True
        assert (detail["status"], detail["event_count"], detail["last_seq"]) == ("running", 30, 30)
        assert detail["repo_path"] == "/repo/live" and detail["markers"] == []
        page = (await web.get(f"/api/history/runs/{RUN}/events?type=task.&after=10")).json()
        tasks = [s for s in range(11, 31) if TYPES[s % len(TYPES)].startswith("task.")]
        assert [e["seq"] for e in page["events"]] == tasks
        assert page["next_after"] is None
        page = (await web.get(f"/api/history/runs/{RUN}/events?unit=u1&limit=3")).json()
        assert [e["seq"] for e in page["events"]] == [2, 4, 6] and page["next_after"] == 6
        assert (await web.get(f"/api/history/runs/{RUN}/graph")).json() == GRAPH
        bad = await web.get(f"/api/history/runs/{RUN}/events?limit=0")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_parameter"
        # It is not history: no list shows it.
        runs = (await web.get("/api/history/runs")).json()
        assert [r["id"] for r in runs["runs"]] == ["run_recorded"] and runs["total"] == 1
        repos = (await web.get("/api/repos")).json()["repos"]
        assert [r["repo_path"] for r in repos] == ["/repo"]

        async with open_sse(web, f"/api/history/runs/{RUN}/stream?after=28") as stream:
            replayed = [await stream.next() for _ in range(2)]
            assert [m.id for m in replayed if m] == ["29", "30"]
            await peer.send(*marked(RUN, range(31, 33), marker), complete(3, f"gave up {marker}"))
            assert (await reply(peer, 3))["t"] == "ok"
            seqs, end = await stream.events_until_end()
            assert seqs == [31, 32]
            assert end is not None and end.data["status"] == "failed"
            assert end.data["duration_ms"] == 90_000 and end.data["history"] is False

        kinds = []
        while not kinds or kinds[-1] != "run.finished":
            kind, data = await next_live(live)
            kinds.append(kind)
            if kind == "run.state":
                state = data
        assert set(kinds[:-1]) == {"run.state"} and state["last_seq"] == 32
        assert data["run"]["id"] == RUN and data["run"]["status"] == "failed"
        assert data["run"]["event_count"] == 32

    # Once ended it is forgotten, like any unknown run.
    for tail in ("", "/events", "/graph", "/stream"):
        response = await web.get(f"/api/history/runs/{RUN}{tail}")
        assert response.status_code == 404, (tail, response.text)
    status = await peer.request({"t": "status", "req": 4})
    assert (status["data"]["runs_stored"], status["data"]["events_stored"]) == (1, 5)
    raw = database_bytes(home)
    assert b"run_recorded" in raw, "the check reads the files the history is in"
    assert marker.encode() not in raw and RUN.encode() not in raw


async def test_a_run_without_history_whose_client_vanishes_is_finished_as_stopped(
    daemon: Daemon, home: Home, web: httpx.AsyncClient
) -> None:
    peer = await Peer.connect(home)
    await peer.send(live_start(RUN), *varied(RUN, range(1, 4)))
    assert (await reply(peer, 1))["t"] == "ok"
    await acked(peer, RUN, 3)
    async with open_sse(web, "/api/live?repo=/repo/live") as live:
        kind, ready = await next_live(live)
        (shown,) = ready["runs"]
        assert kind == "ready" and shown["id"] == RUN and shown["history"] is False
        assert shown["last_seq"] == 3
        await peer.stream.aclose()
        kind, data = await next_live(live)
        assert kind == "run.finished" and data["run"]["status"] == "stopped"
        assert "disconnected without finishing the run" in data["run"]["error"]
    assert (await web.get(f"/api/history/runs/{RUN}")).status_code == 404


async def test_runs_without_history_follow_the_rules_of_recorded_ones(
    daemon: Daemon, home: Home, web: httpx.AsyncClient
) -> None:
    peer = await Peer.connect(home)
    bad_time = {**live_start(RUN), "started_at": "yesterday"}
    refused = await peer.request(bad_time)
    assert refused["code"] == "bad_field" and "started_at" in refused["message"]
    assert (await peer.request(live_start(RUN, req=2)))["data"]["created"] is True
    # Sent again (a client that missed the reply): nothing changes.
    assert (await peer.request(live_start(RUN, req=3)))["data"]["created"] is False
    other = await peer.request(live_start(RUN, req=4, repo="/elsewhere"))
    assert other["code"] == "run_exists"
    resumed = await peer.request(
        {"t": "run.resume", "req": 5, "run": RUN, "time": at(5), "token": "t"}
    )
    assert resumed["code"] == "unknown_run" and "not recorded" in resumed["message"]
    # A bounded number at once: one more is refused until one ends.
    daemon.liveonly.max_runs = 2
    assert (await peer.request(live_start("run_second", req=10)))["t"] == "ok"
    third = await peer.request(live_start("run_third", req=11))
    assert third["code"] == "unavailable" and "not recorded" in third["message"]
    done = await peer.request({**complete(12), "run": "run_second"})
    assert done == {"t": "ok", "req": 12, "data": {}}
    assert (await peer.request(live_start("run_third", req=13)))["t"] == "ok"
    graph = await peer.request(
        {"t": "run.graph", "req": 6, "run": RUN, "nodes": [b"bin"], "edges": [], "levels": []}
    )
    assert graph["code"] == "bad_field" and "graph" in graph["message"]
    # A payload JSON cannot hold ends the connection, as for a recorded run.
    await peer.send({**varied(RUN, [1])[0], "payload": {"x": b"\x00"}})
    fatal = await peer.receive()
    assert fatal["t"] == "error" and fatal["code"] == "bad_field" and "req" not in fatal
    assert await peer.closed()


async def test_a_run_stream_gets_the_end_of_a_run_without_history_that_ends_as_it_reads(
    daemon: Daemon, home: Home, web: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = await Peer.connect(home)
    await peer.send(live_start(RUN), *varied(RUN, range(1, 11)))
    assert (await reply(peer, 1))["t"] == "ok"
    await acked(peer, RUN, 10)
    read = LiveOnlyReader.run_events

    async def end_then_read(self: LiveOnlyReader, run: str, **page: Any) -> Any:
        # The run ends (and is forgotten) after the stream subscribed, before it reads.
        await peer.send(*varied(RUN, range(11, 13)), complete(2))
        assert (await reply(peer, 2))["t"] == "ok"
        return await read(self, run, **page)

    monkeypatch.setattr(LiveOnlyReader, "run_events", end_then_read)
    async with open_sse(web, f"/api/history/runs/{RUN}/stream?after=5") as stream:
        seqs, end = await stream.events_until_end()
    assert seqs == [11, 12], "what came after it subscribed"
    assert end is not None and end.data["status"] == "failed" and end.data["last_seq"] == 12


async def test_a_run_without_history_cannot_be_exported(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.send(live_start(RUN), *varied(RUN, range(1, 4)))
    assert (await reply(peer, 1))["t"] == "ok"
    await acked(peer, RUN, 3)
    out = io.StringIO()

    def export() -> None:
        assert daemon.web_url is not None
        api = HistoryAPI(daemon.web_url, token=read_token(daemon.home))
        try:
            write_export(api, RUN, out)
        finally:
            api.close()

    with pytest.raises(HistoryError) as refused:
        await trio.to_thread.run_sync(export)
    assert refused.value.code == "not_recorded" and "--no-history" in str(refused.value)
    assert out.getvalue() == ""
