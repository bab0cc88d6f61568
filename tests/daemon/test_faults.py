"""Faults inside the daemon's world: vanished orchestrators, runs left
running by a dead daemon, spool files, and a disk that refuses writes."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

import protocol
from choo.client import DaemonClient
from choo_daemon import store
from choo_daemon.daemon import Daemon, DaemonOptions
from protocol.home import Home
from tests.daemon import dbhooks
from tests.daemon.test_session import NOW, Peer, complete, event, stored
from tests.web.support import bearer


async def start_daemon(nursery: trio.Nursery, home: Home, **options: Any) -> Daemon:
    home.root.mkdir(mode=0o700, exist_ok=True)
    options.setdefault("retention_days", None)  # the test data is older than 90 days
    daemon = Daemon(DaemonOptions(home=home, port=0, **options))
    await nursery.start(daemon.serve)
    return daemon


@pytest.fixture
async def quick(home: Home, nursery: trio.Nursery) -> AsyncIterator[Daemon]:
    """A daemon that gives a vanished orchestrator half a second."""
    daemon = await start_daemon(nursery, home, grace_seconds=0.5)
    yield daemon
    daemon.request_shutdown()


async def wait_status(home: Home, run: str, status: str, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while stored(home, "select status from runs where id = ?", run) != [(status,)]:
            await trio.sleep(0.05)


async def test_a_run_whose_orchestrator_vanished_is_stopped_after_the_grace(
    quick: Daemon, home: Home
) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_gone")
    await peer.send(event("run_gone", 1), event("run_gone", 2))
    assert (await peer.receive())["seq"] == 2
    await peer.stream.aclose()  # the orchestrator dies
    assert stored(home, "select status from runs") == [("running",)]
    await wait_status(home, "run_gone", "stopped")
    [(seq, etype, payload)] = stored(
        home, "select seq, type, payload from events where run_id='run_gone' and seq > 2"
    )
    assert (seq, etype) == (3, "run.stopped")
    assert "disconnected without finishing" in payload and "test[" in payload


async def test_an_orchestrator_that_comes_back_in_time_keeps_its_run(
    quick: Daemon, home: Home
) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_back")
    await peer.send(event("run_back", 1))
    await peer.receive()
    await peer.stream.aclose()
    again = await Peer.connect(home)  # reconnects and replays, well within the grace
    await again.send(event("run_back", 1), event("run_back", 2))
    assert (await again.receive())["seq"] == 2
    await trio.sleep(1.0)  # longer than the grace
    assert stored(home, "select status from runs") == [("running",)]
    assert stored(home, "select count(*) from events where type='run.stopped'") == [(0,)]


async def test_a_completed_run_is_never_stopped(quick: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_done")
    done = await peer.request(complete("run_done", 2, completed_units=3))
    assert done["t"] == "ok"
    await peer.stream.aclose()
    await trio.sleep(1.0)
    assert stored(home, "select status from runs") == [("completed",)]


async def test_runs_left_running_by_a_previous_daemon_are_reconciled(
    home: Home, nursery: trio.Nursery
) -> None:
    home.root.mkdir(mode=0o700, exist_ok=True)
    conn = store.open_write_connection(home.database)
    with conn:
        store.create_run(
            conn, run_id="run_left", repo_path="/r", started_at=NOW, parallelism=1, total_units=1
        )
        store.append_events(
            conn, [("run_left", 1, NOW, "unit.started", "u", None, None, None, None)]
        )
    conn.close()
    daemon = await start_daemon(nursery, home, grace_seconds=0.3)
    await wait_status(home, "run_left", "stopped")
    [(payload,)] = stored(home, "select payload from events where type='run.stopped'")
    assert "daemon restarted" in payload
    daemon.request_shutdown()


def spool_a_run(home: Home, run: str, events: int) -> None:
    """What an orchestrator that never reached a daemon leaves behind."""
    client = DaemonClient(home)
    client._enqueue(
        {
            "t": "run.start",
            "run": run,
            "repo_path": "/r",
            "started_at": NOW,
            "parallelism": 1,
            "total_units": 1,
        }
    )
    for seq in range(1, events + 1):
        client.send_event(run, seq, "task.started", time=NOW, unit="u", payload={"n": seq})
    client._enqueue(complete(run, 0))
    assert client.spool() is not None


async def import_spool_with_a_daemon(home: Home) -> None:
    """Start a daemon, let it import the spool, and stop it completely."""
    async with trio.open_nursery() as nursery:
        daemon = await start_daemon(nursery, home)
        with trio.fail_after(10):
            while any(home.spool.glob("*.frames")):
                await trio.sleep(0.05)
        daemon.request_shutdown()


async def test_spool_files_are_imported_once_in_order_at_start(home: Home) -> None:
    spool_a_run(home, "run_sp", 2500)
    [path] = list(home.spool.iterdir())
    copy = home.root / "copy.frames"
    shutil.copy(path, copy)
    await import_spool_with_a_daemon(home)
    rows = stored(home, "select seq from events where run_id='run_sp' order by seq")
    assert [r[0] for r in rows] == list(range(1, 2501))
    assert stored(home, "select status from runs") == [("completed",)]
    assert not (home.spool / "failed").exists()

    # The same file again (a crash mid-import): nothing is stored twice.
    shutil.copy(copy, path)
    await import_spool_with_a_daemon(home)
    assert stored(home, "select count(*), max(seq) from events") == [(2500, 2500)]


async def test_status_shows_spool_files_waiting(daemon: Daemon, home: Home) -> None:
    spool_a_run(home, "run_later", 3)  # written after this daemon started: waits for the next
    assert daemon.status()["spool"]["files"] == 1


async def test_a_spool_file_that_is_not_frames_is_set_aside(
    home: Home, nursery: trio.Nursery
) -> None:
    home.spool.mkdir(parents=True)
    (home.spool / "0-bad.frames").write_bytes(b"\x00\x00\x00\x05hello")
    daemon = await start_daemon(nursery, home)
    with trio.fail_after(10):
        while not (home.spool / "failed" / "0-bad.frames").exists():
            await trio.sleep(0.05)
    daemon.request_shutdown()


async def test_a_full_disk_holds_acks_keeps_reads_and_loses_nothing(
    daemon: Daemon, home: Home
) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_full")
    # A real SQLITE_FULL: the file may not grow by even one page.
    await daemon.writer.run_in_writer(dbhooks.limit_pages, 0)
    await peer.send(*(event("run_full", n) for n in range(1, 301)))
    with trio.fail_after(10):
        while daemon.writer.failing is None:
            await trio.sleep(0.01)
    # While writes fail: nothing acked, the cause is reported, reads still answer.
    assert daemon.status()["write_error"] == "FullError: database or disk is full"
    async with httpx.AsyncClient(headers=bearer(daemon.home)) as http:
        response = await http.get(f"{daemon.web_url}/api/history/runs")
    assert response.status_code == 200
    assert response.json()["total"] == 1
    await trio.sleep(0.3)  # a few more tries, all failing
    assert not [m for m in peer.inbox if m["t"] == "ack"]
    # Space comes back (between two tries): everything is stored once, then acked.
    await daemon.writer.run_in_writer(dbhooks.limit_pages, None)
    last = 0
    while last < 300:
        last = (await peer.receive(timeout=20))["seq"]
    assert daemon.writer.failing is None
    assert stored(home, "select count(*), max(seq) from events") == [(300, 300)]


def test_protocol_frames_round_trip_through_a_spool_file(home: Home) -> None:
    spool_a_run(home, "run_f", 5)
    [path] = list(home.spool.iterdir())
    messages = protocol.FrameDecoder().feed(path.read_bytes())
    assert [m["t"] for m in messages] == ["run.start", "events", "run.complete"]
    assert [item[0] for item in messages[1]["items"]] == [1, 2, 3, 4, 5]
    assert oct(os.stat(home.spool).st_mode & 0o777) == "0o700"


async def test_a_batch_the_store_refuses_drops_its_sender_not_the_daemon(
    daemon: Daemon, home: Home
) -> None:
    bad = await Peer.connect(home)
    await bad.start_run("run_bad")
    await daemon.writer.run_in_writer(dbhooks.refuse_events_of, "run_bad")
    await bad.send(event("run_bad", 1))
    error = await bad.receive()
    assert error["t"] == "error" and error["code"] == "internal"
    assert "something no retry will fix" in error["message"]
    assert await bad.closed()
    good = await Peer.connect(home)
    await good.start_run("run_ok")
    await good.send(event("run_ok", 1))
    assert await good.receive() == {"t": "ack", "run": "run_ok", "seq": 1}


async def test_half_a_frame_does_not_hold_a_connection_forever(
    daemon: Daemon, home: Home, autojump_clock: trio.abc.Clock
) -> None:
    peer = await Peer.connect(home)
    await peer.stream.send_all(b"\x00\x00\x01\x00abc")  # 256 bytes announced, 3 sent
    error = await peer.receive(timeout=120)
    assert error["code"] == "timeout" and "incomplete" in error["message"]
    assert await peer.closed()


async def test_a_flood_of_connections_is_bounded(
    daemon: Daemon, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from choo_daemon import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "MAX_CLIENTS", 20)
    peers = [await Peer.connect(home) for _ in range(20)]
    extra = await Peer.connect(home, hello=False)
    refused = await extra.receive()
    assert refused["code"] == "busy"
    assert await extra.closed()
    await peers[0].stream.aclose()
    with trio.fail_after(10):
        while len(daemon.sessions) > 19:
            await trio.sleep(0.01)
    assert (await Peer.connect(home)).stream is not None  # room again
