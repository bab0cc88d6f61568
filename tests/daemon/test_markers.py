"""The daemon's own run.stopped is provisional: seqs belong to the run's orchestrator.

When a run's client vanishes past the grace period, the daemon marks the run
stopped with a ``run.stopped`` at the next seq. If the run's own events (or
its end) arrive after all, from a client that stalled or from a spool file,
they are stored, every one, and the marker is retracted; if nothing then
finishes the run, it is marked stopped again after its last event.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from choo.client import DaemonClient
from choo_daemon.daemon import Daemon
from protocol.home import Home
from tests.daemon.test_faults import start_daemon, wait_status
from tests.daemon.test_session import NOW, Peer, complete, stored

GRACE = 0.3


def batch(run: str, first: int, last: int) -> dict[str, Any]:
    """An ``events`` frame with seqs first..last, each with a payload naming its seq."""
    items = [[s, NOW, "task.started", "u", 1, None, {"n": s}, None] for s in range(first, last + 1)]
    return {"t": "events", "run": run, "items": items}


async def stream_and_vanish(home: Home, run: str, last: int) -> None:
    """Start ``run``, stream 1..last until all are acked, then drop the connection."""
    peer = await Peer.connect(home)
    assert (await peer.start_run(run))["t"] == "ok"
    await peer.send(batch(run, 1, last))
    while (await peer.receive())["seq"] < last:
        pass
    await peer.stream.aclose()


async def stopped_by_the_daemon(home: Home, nursery: trio.Nursery, run: str, last: int) -> Daemon:
    """A daemon that has marked ``run`` (events 1..last, all acked) stopped on its own."""
    daemon = await start_daemon(nursery, home, grace_seconds=GRACE)
    await stream_and_vanish(home, run, last)
    await wait_status(home, run, "stopped")
    return daemon


def events_of(home: Home, run: str) -> list[tuple[int, str, Any]]:
    rows = stored(home, "select seq, type, payload from events where run_id = ? order by seq", run)
    return [(seq, kind, json.loads(payload) if payload else None) for seq, kind, payload in rows]


async def test_a_client_back_after_the_grace_period_loses_no_acked_event(
    home: Home, nursery: trio.Nursery
) -> None:
    daemon = await stopped_by_the_daemon(home, nursery, "run_stall", 100)
    assert events_of(home, "run_stall")[-1][:2] == (101, "run.stopped")

    back = await Peer.connect(home)  # the stalled orchestrator, back with 101..110
    await back.send(batch("run_stall", 101, 110))
    assert await back.receive() == {"t": "ack", "run": "run_stall", "seq": 110}

    events = events_of(home, "run_stall")
    assert [e[0] for e in events] == list(range(1, 111))
    assert all(kind == "task.started" and payload == {"n": seq} for seq, kind, payload in events)
    [(status, last_seq, count)] = stored(
        home, "select status, last_seq, event_count from runs where id = 'run_stall'"
    )
    assert (status, last_seq, count) == ("running", 110, 110)

    # Gone for good this time: stopped again, after its last event.
    await back.stream.aclose()
    await wait_status(home, "run_stall", "stopped")
    assert [e[:2] for e in events_of(home, "run_stall")[-2:]] == [
        (110, "task.started"),
        (111, "run.stopped"),
    ]
    daemon.request_shutdown()


async def test_the_end_of_a_run_after_the_grace_period_leaves_no_stop_in_it(
    home: Home, nursery: trio.Nursery
) -> None:
    await stopped_by_the_daemon(home, nursery, "run_late", 5)
    back = await Peer.connect(home)
    await back.send(batch("run_late", 6, 7), complete("run_late", 9))
    assert await back.receive() == {"t": "ack", "run": "run_late", "seq": 7}
    assert (await back.receive())["t"] == "ok"
    await wait_status(home, "run_late", "completed")
    assert [e[:2] for e in events_of(home, "run_late")] == [
        (s, "task.started") for s in range(1, 8)
    ]


def spool_the_rest(home: Home, run: str, first: int, last: int, *, end: bool) -> None:
    """What the run's orchestrator spooled when it could not reach the daemon."""
    client = DaemonClient(home)
    for seq in range(first, last + 1):
        client.send_event(run, seq, "task.started", time=NOW, unit="u", task=1, payload={"n": seq})
    if end:
        client._enqueue(complete(run, 0))
    assert client.spool() is not None


async def restart(home: Home, daemon: Daemon, nursery: trio.Nursery) -> Daemon:
    daemon.request_shutdown()
    with trio.fail_after(30):
        while home.socket.exists():
            await trio.sleep(0.02)
    return await start_daemon(nursery, home, grace_seconds=GRACE)


async def test_a_spooled_end_retracts_the_daemons_stop(home: Home, nursery: trio.Nursery) -> None:
    daemon = await stopped_by_the_daemon(home, nursery, "run_sp", 3)
    spool_the_rest(home, "run_sp", 4, 6, end=True)
    daemon = await restart(home, daemon, nursery)
    await wait_status(home, "run_sp", "completed")
    assert [e[:2] for e in events_of(home, "run_sp")] == [(s, "task.started") for s in range(1, 7)]
    assert events_of(home, "run_sp")[3][2] == {"n": 4}  # the spooled event, not the marker
    daemon.request_shutdown()


async def test_spooled_events_without_the_end_move_the_stop_after_them(
    home: Home, nursery: trio.Nursery
) -> None:
    daemon = await stopped_by_the_daemon(home, nursery, "run_sp2", 3)
    spool_the_rest(home, "run_sp2", 4, 6, end=False)
    daemon = await restart(home, daemon, nursery)
    with trio.fail_after(20):
        while [e[:2] for e in events_of(home, "run_sp2")][-1] != (7, "run.stopped"):
            await trio.sleep(0.05)
    events = events_of(home, "run_sp2")
    assert [e[0] for e in events] == list(range(1, 8))
    assert [e[1] for e in events].count("run.stopped") == 1
    assert "spool file" in events[-1][2]["reason"]
    await wait_status(home, "run_sp2", "stopped")
    daemon.request_shutdown()
