"""One client's bad data never costs another client anything.

An integer the store cannot hold is refused by validation (``bad_field``),
never by the store (``internal``). A batch the store refuses for what one
sender put in it is applied again op by op, so that only that sender is
refused: other connections in the same batch keep their events and their
connection.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.lowlevel

from choo.client import open_daemon_client
from choo_daemon import store
from choo_daemon.daemon import Daemon
from choo_daemon.dbmsg import EventsOp
from choo_daemon.dbproc import Applier
from choo_daemon.rows import may_hold_secrets
from protocol import FrameDecoder, encode_events, pack_event_item
from protocol.home import Home
from tests.daemon import dbhooks
from tests.daemon.test_session import NOW, Peer, complete, event, stored


@pytest.mark.parametrize(
    ("field", "value"), [("pr", 2**64 - 1), ("task", 2**63), ("task", -1), ("pr", -(2**63))]
)
async def test_an_event_integer_the_store_cannot_hold_is_bad_field(
    daemon: Daemon, home: Home, field: str, value: int
) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_int")
    await peer.send(event("run_int", 1), event("run_int", 2, **{field: value}))
    first = await peer.receive()
    error = first if first["t"] == "error" else await peer.receive()
    assert error["code"] == "bad_field" and "req" not in error
    assert f'"{field}" must be between 0 and 2**63-1' in error["message"]
    assert await peer.closed()
    assert stored(home, "select count(*) from events where seq = 2") == [(0,)]


@pytest.mark.parametrize("field", ["parallelism", "total_units"])
async def test_a_run_start_integer_the_store_cannot_hold_is_a_bad_field_reply(
    daemon: Daemon, home: Home, field: str
) -> None:
    peer = await Peer.connect(home)
    reply = await peer.request(
        {
            "t": "run.start",
            "req": 5,
            "run": "run_big",
            "repo_path": "/repo",
            "started_at": NOW,
            "parallelism": 2,
            "total_units": 3,
            field: 2**64 - 1,
        }
    )
    assert (reply["t"], reply["req"], reply["code"]) == ("error", 5, "bad_field")
    assert (await peer.start_run("run_ok", req=6))["t"] == "ok"  # the connection goes on


async def test_run_complete_counts_the_store_cannot_hold_are_a_bad_field_reply(
    daemon: Daemon, home: Home
) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_c")
    reply = await peer.request(complete("run_c", 7, completed_units=2**64 - 1))
    assert (reply["t"], reply["req"], reply["code"]) == ("error", 7, "bad_field")
    assert stored(home, "select status from runs where id = 'run_c'") == [("running",)]


def _events_op(sid: int, run: str, seqs: range) -> EventsOp:
    items = [pack_event_item(s, NOW, "unit.started", "u", None, None, {"n": s}, None) for s in seqs]
    [msg] = FrameDecoder(keep_event_bodies=True).feed(encode_events(run, items))
    from protocol import BODY

    return EventsOp(sid, [msg[BODY]], {run: seqs[-1]}, [not may_hold_secrets(msg)])


def test_a_refused_sender_in_a_batch_leaves_the_others_whole(tmp_path: Path) -> None:
    conn = store.open_write_connection(tmp_path / "history.db")
    with conn:
        for run in ("run_a", "run_bad", "run_b"):
            store.create_run(
                conn, run_id=run, repo_path="/r", started_at=NOW, parallelism=1, total_units=1
            )
    dbhooks.refuse_events_of(conn, "run_bad")
    applier = Applier(conn)
    ops = [
        _events_op(0, "run_a", range(1, 4)),
        _events_op(1, "run_bad", range(1, 3)),
        _events_op(2, "run_b", range(1, 6)),
        _events_op(0, "run_a", range(4, 6)),
        _events_op(1, "run_bad", range(3, 4)),
    ]
    applied = applier.apply(ops)
    assert applied.fatal == {1: ("internal", applied.fatal[1][1])}
    assert "something no retry will fix" in applied.fatal[1][1]
    assert applied.acks == {0: {"run_a": 5}, 2: {"run_b": 5}}
    assert applied.skipped == {1, 4}
    assert applied.inserted == 10
    counts = dict(conn.execute("SELECT run_id, count(*) FROM events GROUP BY run_id").fetchall())
    assert counts == {"run_a": 5, "run_b": 5}
    conn.close()


HEALTHY = 4
FLOODERS = 4
EVENTS = 3000


async def test_a_flood_of_refused_events_costs_healthy_streams_nothing(
    daemon: Daemon, home: Home
) -> None:
    # Each flooder takes the run with its owner token (PROTOCOL.md section 7, *Owners*).
    start = {
        "t": "run.start",
        "req": 1,
        "run": "run_bad",
        "repo_path": "/repo",
        "started_at": NOW,
        "parallelism": 1,
        "total_units": 1,
        "token": "tok-bad",
    }
    bad = await Peer.connect(home)
    assert (await bad.request(start))["t"] == "ok"
    await daemon.writer.run_in_writer(dbhooks.refuse_events_of, "run_bad")
    refused = 0
    done = trio.Event()

    async def flood() -> None:
        nonlocal refused
        while not done.is_set():
            peer = await Peer.connect(home)
            flood = (event("run_bad", s, payload={"x": "y" * 50}) for s in range(1, 40))
            await peer.send(start, *flood)
            assert (await peer.receive())["t"] == "ok"
            error = await peer.receive()
            assert (error["t"], error["code"]) == ("error", "internal")
            assert await peer.closed()
            refused += 1

    async def healthy(n: int, results: list[tuple[int, int]]) -> None:
        run = f"run_ok{n}"
        async with open_daemon_client(home, name=f"healthy{n}") as client:
            await client.start_run(
                run, repo_path="/r", started_at=NOW, parallelism=1, total_units=1
            )
            for seq in range(1, EVENTS + 1):
                client.send_event(run, seq, "task.started", time=NOW, unit="u", payload={"n": seq})
                if seq % 50 == 0:
                    await trio.lowlevel.checkpoint()  # let the flood in between
            await client.wait_acked(run)
            results.append((client.reconnects, client.unacked()))

    results: list[tuple[int, int]] = []
    async with trio.open_nursery() as nursery:
        for _ in range(FLOODERS):
            nursery.start_soon(flood)
        async with trio.open_nursery() as streams:
            for n in range(HEALTHY):
                streams.start_soon(healthy, n, results)
        done.set()
    assert results == [(0, 0)] * HEALTHY  # no reconnect, nothing left unacked
    for n in range(HEALTHY):
        assert stored(home, "select count(*) from events where run_id = ?", f"run_ok{n}") == [
            (EVENTS,)
        ]
    assert refused >= 1
    assert stored(home, "select count(*) from events where run_id = 'run_bad'") == [(0,)]
    print(f"\n{HEALTHY} healthy streams x {EVENTS} events beside {refused} refused connections")
