"""The messages between the daemon and its database process: they cross the
wire whole, and batches are committed in the order they were sent."""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from choo_daemon import dbmsg
from choo_daemon.dbproc import _frame, _Server
from choo_daemon.dbwire import ANSWER_HEADER, SharedFile
from choo_daemon.rows import may_hold_secrets
from protocol import BODY, FrameDecoder, encode_events, pack_event_item
from tests.daemon import dbhooks
from tests.daemon.test_session import NOW

RUN = "run_o"
START = {
    "t": "run.start",
    "req": 1,
    "run": RUN,
    "repo_path": "/r",
    "started_at": NOW,
    "parallelism": 1,
    "total_units": 1,
}


def events_op(sender: int, seqs: range) -> dbmsg.EventsOp:
    payload = {"text": "x" * 1000}
    items = [pack_event_item(s, NOW, "unit.started", "u", None, None, payload, None) for s in seqs]
    [msg] = FrameDecoder(keep_event_bodies=True).feed(encode_events(RUN, items))
    return dbmsg.EventsOp(sender, [msg[BODY]], {RUN: seqs[-1]}, [not may_hold_secrets(msg)])


REQUESTS = [
    dbmsg.Open(set_aside=True),
    dbmsg.Apply(
        7, [events_op(0, range(1, 3)), dbmsg.RequestOp(1, START), events_op(1, range(3, 4))]
    ),
    dbmsg.Call(dbhooks.limit_pages, (None,)),
    dbmsg.Close(),
]
ANSWERS = [
    dbmsg.Ok(dbmsg.Opened(events=3, runs=1, set_aside="/h/history.db.corrupt")),
    dbmsg.Ok(
        dbmsg.Outcome(
            acks={0: {RUN: 2}},
            replies=[(1, {"t": "ok", "req": 1, "data": {}})],
            fatal={2: ("unknown_run", "never started")},
            skipped={4},
            inserted=2,
            runs_created=1,
            runs_changed=[(RUN, "run.start")],
            problems=["Traceback ..."],
        )
    ),
    dbmsg.Ok(None),
    dbmsg.Failed("passing", "FullError: database or disk is full"),
    dbmsg.Failed("failed", "ValueError: no", "Traceback ..."),
]


@pytest.fixture
def shared() -> Iterator[tuple[SharedFile, SharedFile]]:
    writer = SharedFile.create()
    reader = SharedFile(os.dup(writer.fd))  # as the database process sees it
    yield writer, reader
    writer.close()
    reader.close()


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_a_request_crosses_the_memory_file_whole(
    request_: object, shared: tuple[SharedFile, SharedFile]
) -> None:
    writer, reader = shared
    assert reader.load(writer.dump(request_)) == request_


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: repr(a)[:20])
def test_an_answer_crosses_the_socket_whole(answer: dbmsg.Answer) -> None:
    frame = _frame(answer)
    (size,) = ANSWER_HEADER.unpack_from(frame)
    assert size == len(frame) - ANSWER_HEADER.size
    assert pickle.loads(frame[ANSWER_HEADER.size :]) == answer


def stored(server: _Server) -> int:
    assert server.conn is not None
    count: int = server.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return count


def test_a_batch_behind_one_that_failed_waits_for_its_turn(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    server = _Server(theirs, [], tmp_path / "history.db")
    try:
        server.open(dbmsg.Open())
        started = server.apply(dbmsg.Apply(0, [dbmsg.RequestOp(0, START)]))
        assert started is not None and started.runs_created == 1
        server.call(dbmsg.Call(dbhooks.limit_pages, (0,)))  # the disk is full
        first, second = (
            dbmsg.Apply(1, [events_op(0, range(1, 301))]),
            dbmsg.Apply(2, [events_op(0, range(301, 303))]),
        )
        with pytest.raises(apsw.FullError):
            server.apply(first)
        assert server.apply(second) is None  # sent behind it: not applied
        server.call(dbmsg.Call(dbhooks.limit_pages, (None,)))  # room again
        assert server.apply(second) is None  # still not its turn
        assert stored(server) == 0
        applied = server.apply(first)
        assert applied is not None and applied.acks == {0: {RUN: 300}}
        applied = server.apply(second)
        assert applied is not None and applied.acks == {0: {RUN: 302}}
        assert server.apply(second) is None  # and each once
        assert stored(server) == 302
    finally:
        server.close()
        ours.close()
        theirs.close()
