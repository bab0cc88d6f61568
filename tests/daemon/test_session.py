"""The daemon's socket side, driven frame by frame over a real Unix socket."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import apsw
import pytest
import trio

import protocol
from choo_daemon.daemon import Daemon
from protocol.home import Home

NOW = "2026-01-20T14:30:52.123Z"


class Peer:
    """A raw protocol peer: frames out, decoded messages in."""

    open: ClassVar[list[Peer]] = []

    def __init__(self, stream: trio.SocketStream) -> None:
        Peer.open.append(self)
        self.stream = stream
        self.decoder = protocol.FrameDecoder()
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, home: Home, *, hello: bool = True) -> Peer:
        peer = cls(await trio.open_unix_socket(os.fspath(home.socket)))
        if hello:
            await peer.send({"t": "hello", "v": 1, "client": "test", "pid": os.getpid()})
            welcome = await peer.receive()
            assert welcome["t"] == "welcome", welcome
        return peer

    async def send(self, *messages: dict[str, Any]) -> None:
        await self.stream.send_all(b"".join(protocol.encode(m) for m in messages))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while not self.inbox:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("daemon closed the connection")
                self.inbox += self.decoder.feed(data)
        return self.inbox.pop(0)

    async def closed(self) -> bool:
        """True once the daemon has closed its side (after any pending frames)."""
        with trio.fail_after(10):
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    return True
                self.inbox += self.decoder.feed(data)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        return await self.receive()

    async def start_run(self, run: str, req: int = 1) -> dict[str, Any]:
        return await self.request(
            {
                "t": "run.start",
                "req": req,
                "run": run,
                "repo_path": "/repo",
                "started_at": NOW,
                "parallelism": 2,
                "total_units": 3,
            }
        )


@pytest.fixture(autouse=True)
async def close_peers() -> AsyncIterator[None]:
    yield
    while Peer.open:
        await Peer.open.pop().stream.aclose()


def event(run: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {"t": "event", "run": run, "seq": seq, "time": NOW, "type": "task.started", **extra}


def complete(run: str, req: int, **fields: Any) -> dict[str, Any]:
    """A ``run.complete`` request for a run that completed its one unit."""
    return {
        "t": "run.complete",
        "req": req,
        "run": run,
        "status": "completed",
        "completed_at": NOW,
        "completed_units": 1,
        "failed_units": 0,
        "blocked_units": 0,
        **fields,
    }


def stored(home: Home, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(os.fspath(home.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


async def test_socket_is_private(daemon: Daemon, home: Home) -> None:
    assert stat.S_IMODE(home.socket.stat().st_mode) == 0o600


async def test_welcome_names_version_and_web_url(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home, hello=False)
    welcome = await peer.request({"t": "hello", "v": 1, "client": "t", "pid": 1})
    assert welcome == {"t": "welcome", "v": 1, "daemon": daemon.version, "web": daemon.web_url}
    assert daemon.web_url is not None and daemon.web_url.startswith("http://127.0.0.1:")


async def test_first_frame_must_be_hello(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home, hello=False)
    reply = await peer.request({"t": "status", "req": 1})
    assert reply["t"] == "error" and reply["code"] == "handshake_required"
    assert await peer.closed()


async def test_unknown_protocol_version_is_refused(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home, hello=False)
    reply = await peer.request({"t": "hello", "v": 99, "client": "t", "pid": 1})
    assert reply["code"] == "version_unsupported"
    assert "99" in reply["message"]
    assert await peer.closed()


async def test_events_are_acked_after_they_are_stored(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    assert (await peer.start_run("run_a"))["t"] == "ok"
    await peer.send(*(event("run_a", n, unit="u1", payload={"n": n}) for n in range(1, 101)))
    acked = 0
    while acked < 100:
        ack = await peer.receive()
        assert ack["t"] == "ack" and ack["run"] == "run_a"
        assert ack["seq"] > acked
        acked = ack["seq"]
        # Whatever is acked is already in the file, readable by another connection.
        (count,) = stored(home, "select count(*) from events where run_id='run_a'")[0]
        assert count >= acked
    rows = stored(home, "select seq, unit, payload from events where run_id='run_a' order by seq")
    assert [r[0] for r in rows] == list(range(1, 101))
    assert rows[41][1:] == ("u1", '{"n":42}')


async def test_duplicate_events_are_ignored_and_still_acked(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_d")
    await peer.send(event("run_d", 1), event("run_d", 2))
    assert (await peer.receive())["seq"] == 2
    await peer.send(event("run_d", 1, type="changed"), event("run_d", 2))
    assert await peer.receive() == {"t": "ack", "run": "run_d", "seq": 2}
    rows = stored(home, "select seq, type from events where run_id='run_d' order by seq")
    assert rows == [(1, "task.started"), (2, "task.started")]
    assert daemon.writer.events_stored == 2


async def test_event_for_unknown_run_is_a_fatal_error(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.send(event("run_nope", 1))
    error = await peer.receive()
    assert error["t"] == "error" and error["code"] == "unknown_run"
    assert "run_nope" in error["message"] and "req" not in error
    assert await peer.closed()


async def test_a_protocol_violation_closes_only_that_connection(daemon: Daemon, home: Home) -> None:
    good = await Peer.connect(home)
    bad = await Peer.connect(home)
    await good.start_run("run_g")
    await good.send(event("run_g", 1))
    assert (await good.receive())["t"] == "ack"

    await bad.stream.send_all(b"\x00\x00\x00\x03abc")  # a frame of garbage
    error = await bad.receive()
    assert error["t"] == "error" and error["code"] == "not_msgpack"
    assert await bad.closed()

    await good.send(event("run_g", 2))
    assert await good.receive() == {"t": "ack", "run": "run_g", "seq": 2}
    status = await good.request({"t": "status", "req": 7})
    assert status["t"] == "ok" and status["req"] == 7


async def test_events_before_a_bad_frame_are_kept(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_k")
    await peer.stream.send_all(
        protocol.encode(event("run_k", 1)) + protocol.encode(event("run_k", 2)) + b"\0\0\0\0"
    )
    messages = [await peer.receive(), await peer.receive()]
    assert {"t": "ack", "run": "run_k", "seq": 2} in messages
    assert any(m["t"] == "error" and m["code"] == "bad_length" for m in messages)
    assert stored(home, "select count(*) from events where run_id='run_k'") == [(2,)]


async def test_oversized_frame_is_refused_before_its_body(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.stream.send_all((protocol.MAX_FRAME + 1).to_bytes(4, "big"))
    error = await peer.receive()
    assert error["code"] == "frame_too_large"
    assert await peer.closed()


async def test_requests_get_replies_echoing_req(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    assert await peer.start_run("run_r", req=11) == {
        "t": "ok",
        "req": 11,
        "data": {"run": "run_r", "created": True},
    }
    # Retrying run.start (a lost reply) is harmless.
    again = await peer.start_run("run_r", req=12)
    assert again["data"] == {"run": "run_r", "created": False}
    clash = await peer.request(
        {
            "t": "run.start",
            "req": 13,
            "run": "run_r",
            "repo_path": "/other",
            "started_at": NOW,
            "parallelism": 1,
            "total_units": 1,
        }
    )
    assert clash["t"] == "error" and clash["req"] == 13 and clash["code"] == "run_exists"

    await peer.send(event("run_r", 1), event("run_r", 2))
    graph = {
        "t": "run.graph",
        "req": 14,
        "run": "run_r",
        "nodes": [{"id": "a"}],
        "edges": [],
        "levels": [["a"]],
    }
    replies = [await peer.receive(), await peer.request(graph)]
    assert replies[0] == {"t": "ack", "run": "run_r", "seq": 2}
    assert replies[1] == {"t": "ok", "req": 14, "data": {}}

    resume = {
        "t": "run.resume",
        "req": 15,
        "run": "run_r",
        "time": NOW,
        "token": "tok1",
        "reason": "again",
    }
    assert (await peer.request(resume))["data"] == {"run": "run_r", "last_seq": 3}
    # The same token again (a retried request) adds no second marker.
    assert (await peer.request({**resume, "req": 16}))["data"]["last_seq"] == 3

    done = await peer.request(
        {
            "t": "run.complete",
            "req": 17,
            "run": "run_r",
            "status": "completed",
            "completed_at": NOW,
            "completed_units": 3,
            "failed_units": 0,
            "blocked_units": 0,
        }
    )
    assert done == {"t": "ok", "req": 17, "data": {}}
    assert stored(home, "select status, completed_units, resume_count from runs") == [
        ("completed", 3, 1)
    ]
    assert stored(home, "select seq, type from events where seq = 3") == [(3, "run.resumed")]

    unknown = await peer.request({**resume, "req": 18, "run": "run_zz"})
    assert unknown["t"] == "error" and unknown["code"] == "unknown_run" and unknown["req"] == 18
    # A refused request is a reply, not the end of the connection.
    assert (await peer.request({"t": "status", "req": 19}))["t"] == "ok"


async def test_status_reports_the_daemon(daemon: Daemon, home: Home) -> None:
    await Peer.connect(home)  # another client, counted; the one asking is not
    peer = await Peer.connect(home)
    await peer.start_run("run_s")
    await peer.send(event("run_s", 1), event("run_s", 2))
    await peer.receive()
    reply = await peer.request({"t": "status", "req": 2})
    data = reply["data"]
    assert data["pid"] == os.getpid()
    assert data["socket"] == str(home.socket)
    assert data["database"] == str(home.database)
    assert data["database_bytes"] > 0
    assert data["clients"] == 1
    assert data["events_stored"] == 2 and data["runs_stored"] == 1
    assert data["web"] == daemon.web_url and data["uptime_s"] >= 0


async def test_shutdown_commits_and_acks_what_was_received(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_x")
    n = 3000
    await peer.send(*(event("run_x", i) for i in range(1, n + 1)), {"t": "shutdown", "req": 9})
    last = 0
    ok = False
    while last < n or not ok:
        msg = await peer.receive()
        if msg["t"] == "ack":
            last = msg["seq"]
        else:
            ok = msg == {"t": "ok", "req": 9, "data": {}}
    assert await peer.closed()
    with trio.fail_after(10):
        while home.socket.exists():
            await trio.sleep(0.01)
    assert stored(home, "select count(*), max(seq) from events") == [(n, n)]


async def test_silent_client_is_dropped_after_the_handshake_timeout(
    daemon: Daemon, home: Home, autojump_clock: trio.abc.Clock
) -> None:
    peer = await Peer.connect(home, hello=False)
    error = await peer.receive(timeout=60)
    assert error["code"] == "timeout"
    assert await peer.closed()


async def test_a_client_streaming_without_pause_is_not_timed_out_mid_frame(
    daemon: Daemon, home: Home, autojump_clock: trio.abc.Clock
) -> None:
    """Every write ends inside a frame (the rest of one, the head of the next),
    for longer than the half-frame timeout: each frame is whole in time."""
    peer = await Peer.connect(home)
    # Not recorded (history: false): served in memory, so that no wait on the
    # database process lets the autojump clock run past the timeouts.
    started = await peer.request(
        {
            "t": "run.start",
            "req": 1,
            "run": "run_stream",
            "repo_path": "/repo",
            "started_at": NOW,
            "parallelism": 2,
            "total_units": 3,
            "history": False,
        }
    )
    assert started["t"] == "ok", started
    frames = [protocol.encode(event("run_stream", seq)) for seq in range(1, 42)]
    cut = len(frames[0]) // 2
    await peer.stream.send_all(frames[0][:cut])
    for seq in range(1, 41):
        await trio.sleep(10)  # 400 s in all, each frame completed 10 s after it began
        await peer.stream.send_all(frames[seq - 1][cut:] + frames[seq][:cut])
    await peer.stream.send_all(frames[40][cut:])
    last = 0
    while last < 41:  # each acked at once (a timed-out client gets an error, then EOF)
        msg = await peer.receive()
        assert msg["t"] == "ack", msg
        last = msg["seq"]


async def test_web_health_answers(daemon: Daemon) -> None:
    import httpx

    from tests.web.support import bearer  # it imports this module

    assert daemon.web_url is not None
    async with httpx.AsyncClient(headers=bearer(daemon.home)) as client:
        response = await client.get(daemon.web_url + "/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["pid"] == os.getpid()
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_events_frames_store_every_item(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_b")
    items = [[n, NOW, "task.started", "u", n % 3, None, {"n": n}, None] for n in range(1, 501)]
    await peer.send(
        {"t": "events", "run": "run_b", "items": items[:250]},
        {"t": "events", "run": "run_b", "items": items[250:]},
    )
    last = 0
    while last < 500:
        last = (await peer.receive())["seq"]
    rows = stored(home, "select seq, task, payload from events where run_id='run_b' order by seq")
    assert [r[0] for r in rows] == list(range(1, 501))
    assert rows[9] == (10, 1, '{"n":10}')


async def test_a_bad_item_in_an_events_frame_ends_the_connection(
    daemon: Daemon, home: Home
) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_c")
    bad = {
        "t": "events",
        "run": "run_c",
        "items": [
            [1, NOW, "x", None, None, None, None, None],
            [2, NOW, 5, None, None, None, None, None],
        ],
    }
    error = await peer.request(bad)
    assert error["t"] == "error" and error["code"] == "bad_field" and "item 1" in error["message"]
    assert await peer.closed()
