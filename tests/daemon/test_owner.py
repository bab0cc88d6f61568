"""A run belongs to the connection that started or resumed it (PROTOCOL.md section 7, *Owners*).

The intruder here is written from the protocol text alone, in another style
than ``protocol``'s: a blocking ``socket``, ``struct`` for the length and
``msgpack`` for the body, run in a worker thread so the daemon (in the
test's trio loop) keeps serving.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from typing import Any, ClassVar

import msgpack
import pytest
import trio

from choo.client import DaemonClient, open_daemon_client
from choo_daemon.daemon import Daemon
from protocol.home import Home
from tests.daemon.test_faults import start_daemon
from tests.daemon.test_session import NOW, Peer, complete, event, stored

GRAPH = {"nodes": [{"id": "u"}], "edges": [], "levels": [["u"]]}


class Raw:
    """A plain blocking protocol client: 4-byte big-endian length, then a msgpack map."""

    open: ClassVar[list[Raw]] = []

    def __init__(self, home: Home) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        Raw.open.append(self)
        self.sock.settimeout(10)
        self.sock.connect(os.fspath(home.socket))
        self.buffer = b""
        self.send({"t": "hello", "v": 1, "client": "raw-intruder", "pid": os.getpid()})
        assert self.read()["t"] == "welcome"

    def send(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            body = msgpack.packb(message, use_bin_type=True)
            self.sock.sendall(struct.pack(">I", len(body)) + body)

    def _fill(self, count: int) -> bool:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def read(self) -> dict[str, Any]:
        """The next frame; EOFError once the daemon has closed."""
        if not self._fill(4):
            raise EOFError("closed")
        (size,) = struct.unpack(">I", self.buffer[:4])
        if not self._fill(4 + size):
            raise EOFError("closed mid-frame")
        body, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
        message: dict[str, Any] = msgpack.unpackb(body, raw=False)
        return message

    def closed(self) -> bool:
        try:
            self.read()
        except EOFError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(autouse=True)
def close_raw() -> Iterator[None]:
    yield
    while Raw.open:
        Raw.open.pop().close()


def read_all(peer: Raw) -> list[dict[str, Any]]:
    """Every frame until the daemon closes the connection."""
    frames = []
    while True:
        try:
            frames.append(peer.read())
        except EOFError:
            return frames


async def raw(home: Home) -> Raw:
    return await trio.to_thread.run_sync(Raw, home)


async def call(fn: Any, *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


def start(run: str, req: int, token: str | None) -> dict[str, Any]:
    return {
        "t": "run.start",
        "req": req,
        "run": run,
        "repo_path": "/repo",
        "started_at": NOW,
        "parallelism": 1,
        "total_units": 1,
        "token": token,
    }


def resume(run: str, req: int, token: str) -> dict[str, Any]:
    return {"t": "run.resume", "req": req, "run": run, "time": NOW, "token": token}


def types_of(home: Home, run: str) -> list[tuple[int, str]]:
    return stored(home, "select seq, type from events where run_id = ? order by seq", run)


async def owned(home: Home, run: str, token: str = "tok-owner") -> Peer:
    owner = await Peer.connect(home)
    assert (await owner.request(start(run, 1, token)))["t"] == "ok"
    await owner.send(event(run, 1, type="owner.one"))
    assert await owner.receive() == {"t": "ack", "run": run, "seq": 1}
    return owner


async def test_anothers_events_are_refused_and_the_owners_stored(
    daemon: Daemon, home: Home
) -> None:
    owner = await owned(home, "run_o")
    intruder = await raw(home)
    await call(intruder.send, event("run_o", 2, type="intruder.two"))
    error = await call(intruder.read)
    assert error["t"] == "error" and error["code"] == "not_owner" and "req" not in error
    assert "run_o" in error["message"]
    assert await call(intruder.closed)

    await owner.send(event("run_o", 2, type="owner.two"))
    assert await owner.receive() == {"t": "ack", "run": "run_o", "seq": 2}
    assert types_of(home, "run_o") == [(1, "owner.one"), (2, "owner.two")]


async def test_an_events_frame_of_another_stores_nothing_even_its_own_runs_before(
    daemon: Daemon, home: Home
) -> None:
    owner = await owned(home, "run_f")
    intruder = await raw(home)
    items = [[s, NOW, "intruder", None, None, None, None, None] for s in (2, 3)]
    await call(intruder.send, {"t": "events", "run": "run_f", "items": items})
    assert (await call(intruder.read))["code"] == "not_owner"
    await owner.send(event("run_f", 2, type="owner.two"), event("run_f", 3, type="owner.three"))
    assert await owner.receive() == {"t": "ack", "run": "run_f", "seq": 3}
    assert [t for _, t in types_of(home, "run_f")] == ["owner.one", "owner.two", "owner.three"]


async def test_anothers_graph_and_end_are_refused_by_reply(daemon: Daemon, home: Home) -> None:
    owner = await owned(home, "run_g")
    assert (await owner.request({"t": "run.graph", "req": 2, "run": "run_g", **GRAPH}))["t"] == "ok"
    intruder = await raw(home)
    await call(
        intruder.send, {"t": "run.graph", "req": 5, "run": "run_g", **{**GRAPH, "nodes": []}}
    )
    graph = await call(intruder.read)
    assert (graph["t"], graph["req"], graph["code"]) == ("error", 5, "not_owner")
    await call(intruder.send, complete("run_g", 6, status="failed"))
    end = await call(intruder.read)
    assert (end["t"], end["req"], end["code"]) == ("error", 6, "not_owner")
    # A reply: the connection stays open.
    await call(intruder.send, {"t": "status", "req": 7})
    assert (await call(intruder.read))["t"] == "ok"

    nodes = stored(home, "select nodes from graphs where run_id = 'run_g'")
    assert nodes == [('[{"id":"u"}]',)]
    assert stored(home, "select status from runs where id = 'run_g'") == [("running",)]
    assert (await owner.request(complete("run_g", 3)))["t"] == "ok"
    assert stored(home, "select status from runs where id = 'run_g'") == [("completed",)]


async def test_a_start_with_anothers_token_does_not_take_the_run(
    daemon: Daemon, home: Home
) -> None:
    owner = await owned(home, "run_s")
    intruder = await raw(home)
    await call(intruder.send, start("run_s", 1, "not-the-token"))
    assert (await call(intruder.read))["code"] == "run_exists"
    await call(intruder.send, event("run_s", 2))
    assert (await call(intruder.read))["code"] == "not_owner"
    await owner.send(event("run_s", 2, type="owner.two"))
    assert (await owner.receive())["seq"] == 2


async def test_the_owners_token_takes_the_run_back_on_a_new_connection(
    daemon: Daemon, home: Home
) -> None:
    """A client that reconnects before the daemon noticed its old connection end."""
    old = await owned(home, "run_t", token="tok-t")
    new = await raw(home)
    await call(new.send, start("run_t", 1, "tok-t"), event("run_t", 2, type="new.two"))
    answers = [await call(new.read), await call(new.read)]  # in any order
    assert {"t": "ok", "req": 1, "data": {"run": "run_t", "created": False}} in answers
    assert {"t": "ack", "run": "run_t", "seq": 2} in answers
    # The old connection is not the owner any more.
    await old.send(event("run_t", 3))
    assert (await old.receive())["code"] == "not_owner"
    assert types_of(home, "run_t") == [(1, "owner.one"), (2, "new.two")]


async def test_while_it_is_waited_for_only_the_token_or_a_resume_takes_it(
    home: Home, nursery: trio.Nursery
) -> None:
    await start_daemon(nursery, home, grace_seconds=60)
    owner = await owned(home, "run_w", token="tok-w")
    await owner.stream.aclose()  # the orchestrator vanished: the daemon waits for it
    intruder = await raw(home)
    await call(intruder.send, event("run_w", 2, type="intruder"))
    assert (await call(intruder.read))["code"] == "not_owner"

    # A take-over (choo resume --take-over) passes the run on.
    taker = await raw(home)
    await call(taker.send, resume("run_w", 1, "tok-take"))
    reply = await call(taker.read)
    assert reply["t"] == "ok" and reply["data"]["last_seq"] == 3
    await call(taker.send, event("run_w", 4, type="taker.four"))
    assert await call(taker.read) == {"t": "ack", "run": "run_w", "seq": 4}
    assert [t for _, t in types_of(home, "run_w")] == [
        "owner.one",
        "run.stopped",
        "run.resumed",
        "taker.four",
    ]
    # The first orchestrator's token no longer gives the run back.
    back = await raw(home)
    await call(back.send, start("run_w", 1, "tok-w"), event("run_w", 5, type="back"))
    answers = await call(read_all, back)
    assert "not_owner" in [a.get("code") for a in answers]
    assert "back" not in [t for _, t in types_of(home, "run_w")]


async def test_a_resume_sent_again_after_another_resumed_is_refused(
    home: Home, nursery: trio.Nursery
) -> None:
    await start_daemon(nursery, home, grace_seconds=60)
    first = await owned(home, "run_r")
    await first.stream.aclose()
    resumer = await raw(home)
    await call(resumer.send, resume("run_r", 1, "tok-r1"))
    assert (await call(resumer.read))["data"]["last_seq"] == 3
    await call(resumer.close)
    second = await raw(home)
    await call(second.send, resume("run_r", 1, "tok-r2"))
    assert (await call(second.read))["data"]["last_seq"] == 5
    await call(second.close)
    # The first resumer replays: its resume, then its events. None is stored.
    stale = await raw(home)
    await call(stale.send, resume("run_r", 1, "tok-r1"), event("run_r", 4, type="stale"))
    error = await call(stale.read)
    assert error["code"] == "not_owner" and "req" not in error
    assert "stale" not in [t for _, t in types_of(home, "run_r")]


async def test_the_client_replays_a_resumed_run_with_its_resume(daemon: Daemon, home: Home) -> None:
    """choo's client re-sends the run.resume (same token) ahead of a replay."""
    first = await owned(home, "run_c")
    await first.stream.aclose()
    async with open_daemon_client(home) as client:
        last = await client.append_resume_marker("run_c", time=NOW, reason="test")
        assert last == 3  # the daemon waited for the first client: run.stopped, run.resumed
        await broken(client)
        for seq in (last + 1, last + 2):
            client.send_event("run_c", seq, "after.resume", time=NOW)
        await client.wait_acked("run_c")
        assert client.reconnects >= 1
    assert [t for _, t in types_of(home, "run_c")] == [
        "owner.one",
        "run.stopped",
        "run.resumed",
        "after.resume",
        "after.resume",
    ]


async def broken(client: DaemonClient) -> None:
    """Break the client's connection and wait until it has a new one."""
    stream = client._stream
    assert stream is not None
    await stream.aclose()
    with trio.fail_after(10):
        while client._stream is None or client._stream is stream:
            await trio.sleep(0.01)


async def test_a_restarted_daemon_gives_a_run_left_running_only_to_its_token(
    home: Home, nursery: trio.Nursery
) -> None:
    async with trio.open_nursery() as first:  # the first daemon, gone when it ends
        daemon = await start_daemon(first, home, grace_seconds=60)
        owner = await owned(home, "run_x", token="tok-x")
        await owner.stream.aclose()
        daemon.request_shutdown()
    await start_daemon(nursery, home, grace_seconds=60)
    intruder = await raw(home)
    await call(intruder.send, event("run_x", 2, type="intruder"))
    assert (await call(intruder.read))["code"] == "not_owner"
    back = await raw(home)
    await call(back.send, start("run_x", 1, "tok-x"), event("run_x", 2, type="owner.two"))
    answers = [await call(back.read), await call(back.read)]
    assert {"t": "ack", "run": "run_x", "seq": 2} in answers
    assert types_of(home, "run_x") == [(1, "owner.one"), (2, "owner.two")]


async def test_a_spool_file_needs_no_owner(home: Home, nursery: trio.Nursery) -> None:
    """The daemon imports spool files itself, whoever owns the run."""
    async with trio.open_nursery() as first:
        daemon = await start_daemon(first, home, grace_seconds=60)
        owner = await owned(home, "run_p", token="tok-p")
        await owner.stream.aclose()
        daemon.request_shutdown()
    spooler = DaemonClient(home)
    for seq in (2, 3):
        spooler.send_event("run_p", seq, "spooled", time=NOW)
    assert spooler.spool() is not None
    await start_daemon(nursery, home, grace_seconds=60)
    with trio.fail_after(10):
        # The file goes once its events are committed: wait for both.
        while len(types_of(home, "run_p")) < 3 or list(home.spool.glob("*.frames")):
            await trio.sleep(0.02)
    assert types_of(home, "run_p") == [(1, "owner.one"), (2, "spooled"), (3, "spooled")]
