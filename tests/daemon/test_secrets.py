"""The daemon scrubs secrets itself: raw frames full of credentials, sent past the
orchestrator's redaction, leave none of them in the database files."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from choo_daemon.daemon import Daemon
from protocol.home import Home
from protocol.redact import MARK
from tests.daemon.test_session import NOW, Peer, event
from tests.protocol.test_redact import CORPUS
from tests.web.support import bearer

RUN = "run_secrets"
AROUND = "deploy step 3 finished"


def database_bytes(home: Home) -> bytes:
    """The raw bytes of the database and its WAL and shared-memory files."""
    db = home.database
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return b"".join(p.read_bytes() for p in files if p.exists())


async def test_no_secret_reaches_the_database_files(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    assert (await peer.start_run(RUN))["t"] == "ok"
    seq = 0
    for secret in CORPUS:
        line = f"{AROUND}\n{secret.text}\nnext: upload"
        seq += 1  # in a payload, nested
        await peer.send(
            event(RUN, seq, payload={"output_tail": line, "deep": {"list": [{"x": [line]}]}})
        )
        seq += 1  # as the event's error
        await peer.send(event(RUN, seq, type="task.failed", error=line))
        seq += 1  # as a task title, in an "events" frame
        await peer.send(
            {
                "t": "events",
                "run": RUN,
                "items": [[seq, NOW, "task.started", "u1", 1, None, {"title": line}, None]],
            }
        )
    # A secret-named key hides its value, whatever the value looks like.
    seq += 1
    await peer.send(event(RUN, seq, payload={"env": {"DB_PASSWORD": "plainword", "n": 1}}))
    acked = 0
    while acked < seq:
        reply = await peer.receive()
        assert reply["t"] == "ack", reply
        acked = reply["seq"]
    graph = {
        "t": "run.graph",
        "req": 2,
        "run": RUN,
        "nodes": [{"id": "u1", "title": f"{AROUND} {CORPUS[0].text}"}],
        "edges": [],
        "levels": [["u1"]],
    }
    assert (await peer.request(graph))["t"] == "ok"
    done = await peer.request(
        {
            "t": "run.complete",
            "req": 3,
            "run": RUN,
            "status": "failed",
            "completed_at": NOW,
            "completed_units": 0,
            "failed_units": 1,
            "blocked_units": 0,
            "error": f"{AROUND}: {CORPUS[1].text}",
        }
    )
    assert done["t"] == "ok"

    raw = database_bytes(home)
    assert AROUND.encode() in raw
    leaked = [s.name for s in CORPUS if s.core.encode() in raw]
    assert leaked == []
    assert b"plainword" not in raw

    # What is around the secrets is stored and shown as it was.
    assert daemon.web_url is not None
    async with httpx.AsyncClient(base_url=daemon.web_url, headers=bearer(daemon.home)) as web:
        page = (await web.get(f"/api/history/runs/{RUN}/events?limit=1000")).json()
        run = (await web.get(f"/api/history/runs/{RUN}")).json()
        nodes = (await web.get(f"/api/history/runs/{RUN}/graph")).json()["nodes"]
    events = page["events"]
    assert len(events) == seq
    first = events[0]["payload"]["output_tail"]
    assert first.startswith(f"{AROUND}\n") and first.endswith("\nnext: upload")
    assert MARK in first
    assert events[1]["error"].startswith(AROUND) and MARK in events[1]["error"]
    assert events[2]["payload"]["title"].startswith(AROUND)
    assert events[-1]["payload"] == {"env": {"DB_PASSWORD": MARK, "n": 1}}
    assert run["error"].startswith(AROUND) and MARK in run["error"]
    assert nodes[0]["title"].startswith(AROUND) and MARK in nodes[0]["title"]
    assert os.fspath(Path(home.database)).endswith("history.db")
