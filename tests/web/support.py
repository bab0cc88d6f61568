"""Helpers for the web tests: a history writer over the daemon's socket, and an SSE reader."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import h11
import httpx
import trio

from choo_daemon.store import iso_utc
from protocol.home import Home, read_token
from tests.daemon.test_session import Peer

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
TYPES = ("unit.started", "task.started", "task.claude.invoke", "task.completed", "unit.completed")


def bearer(home: Home) -> dict[str, str]:
    """The header that shows the daemon's web token (made at its start)."""
    token = read_token(home)
    assert token is not None, f"no web token in {home.token}"
    return {"Authorization": f"Bearer {token}"}


def at(seconds: float) -> str:
    return iso_utc(BASE + timedelta(seconds=seconds))


def ev(run: str, seq: int, type: str = "task.started", **extra: Any) -> dict[str, Any]:
    return {"t": "event", "run": run, "seq": seq, "time": at(seq / 1000), "type": type, **extra}


def varied(run: str, seqs: Iterable[int], units: int = 3) -> list[dict[str, Any]]:
    """Events cycling through TYPES and units u1..u<units>, payload {"n": seq}."""
    return [
        ev(run, s, TYPES[s % len(TYPES)], unit=f"u{s % units + 1}", task=s % 4, payload={"n": s})
        for s in seqs
    ]


class History:
    """Writes runs through a raw protocol peer, waiting for acks and replies."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._req = itertools.count(1)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        req = next(self._req)
        await self.peer.send({**message, "req": req})
        while True:
            reply = await self.peer.receive(timeout=30)
            if reply.get("req") == req:
                assert reply["t"] == "ok", reply
                data: dict[str, Any] = reply["data"]
                return data
            assert reply["t"] == "ack", reply

    async def start(
        self, run: str, *, repo: str = "/repo", started: float = 0, units: int = 3
    ) -> None:
        await self.request(
            {
                "t": "run.start",
                "run": run,
                "repo_path": repo,
                "started_at": at(started),
                "parallelism": 2,
                "total_units": units,
            }
        )

    async def send(self, events: list[dict[str, Any]], *, wait: bool = True) -> None:
        """Send events; with ``wait``, return once the last one's run is acked up to it."""
        await self.peer.send(*events)
        if wait and events:
            await self.wait_acked(events[-1]["run"], events[-1]["seq"])

    async def wait_acked(self, run: str, seq: int) -> None:
        while True:
            ack = await self.peer.receive(timeout=60)
            assert ack["t"] == "ack", ack
            if ack["run"] == run and ack["seq"] >= seq:
                return

    async def graph(self, run: str) -> None:
        await self.request(
            {
                "t": "run.graph",
                "run": run,
                "nodes": [{"id": "u1"}, {"id": "u2"}, {"id": "u3"}],
                "edges": [{"from": "u2", "to": "u1"}, {"from": "u3", "to": "u2"}],
                "levels": [["u1"], ["u2"], ["u3"]],
            }
        )

    async def complete(
        self, run: str, status: str = "completed", *, ended: float = 60, done: int = 3
    ) -> None:
        await self.request(
            {
                "t": "run.complete",
                "run": run,
                "status": status,
                "completed_at": at(ended),
                "completed_units": done,
                "failed_units": 0,
                "blocked_units": 0,
            }
        )

    async def resume(self, run: str, token: str, reason: str = "again") -> int:
        data = await self.request(
            {"t": "run.resume", "run": run, "time": at(120), "token": token, "reason": reason}
        )
        last: int = data["last_seq"]
        return last


@dataclass
class Message:
    event: str | None = None
    id: str | None = None
    data: Any = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


@asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SSE]:
    """GET an event stream from ``client``'s server; nothing is read before asked.

    A bare h11 client on a trio socket: it reads exactly when the test asks,
    and closing it leaves no half-consumed generator behind. It sends the
    client's Authorization header, if it has one (``headers`` may override it).
    """
    base = client.base_url
    assert base.port is not None
    auth = client.headers.get("Authorization")
    stream = await trio.open_tcp_stream(base.host, base.port)
    async with stream:
        sse = SSE(stream)
        await sse.request(url, {**({"Authorization": auth} if auth else {}), **(headers or {})})
        yield sse


class SSE:
    """Reads an HTTP response as server-sent event messages."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.headers = httpx.Headers()
        self._buffer = b""
        self._ended = False

    async def request(self, url: str, headers: dict[str, str]) -> None:
        fields = [("Host", "127.0.0.1"), ("Accept", "text/event-stream"), *headers.items()]
        await self.stream.send_all(
            self.conn.send(h11.Request(method="GET", target=url, headers=fields))
            + self.conn.send(h11.EndOfMessage())
        )
        with trio.fail_after(10):
            response = await self._next_event()
        assert isinstance(response, h11.Response), response
        self.headers = httpx.Headers([(k.decode(), v.decode()) for k, v in response.headers])
        assert response.status_code == 200, response
        assert self.headers["content-type"].startswith("text/event-stream")

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.receive_some(65536))

    async def _line(self) -> str | None:
        while b"\n" not in self._buffer:
            if self._ended:
                return None
            event = await self._next_event()
            if isinstance(event, h11.Data):
                self._buffer += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self._ended = True
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def block(self, timeout: float = 10) -> Message | None:
        """The next message (or comment-only block); None at the end of the stream."""
        msg = Message()
        seen = False
        data: list[str] = []
        with trio.fail_after(timeout):
            while (line := await self._line()) is not None:
                if line == "":
                    if seen:
                        if data:
                            msg.data = json.loads("\n".join(data))
                        return msg
                    continue
                seen = True
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    msg.comments.append(value)
                elif name == "data":
                    data.append(value)
                elif name == "event":
                    msg.event = value
                elif name == "id":
                    msg.id = value
                elif name == "retry":
                    msg.retry = int(value)
        return None

    async def next(self, timeout: float = 10) -> Message | None:
        """The next message with an event, skipping comments and retry hints."""
        while True:
            msg = await self.block(timeout)
            if msg is None or msg.event is not None:
                return msg

    async def events_until_end(self, timeout: float = 30) -> tuple[list[int], Message | None]:
        """Seqs of every "event" message, then the "end" message (None if it just stopped)."""
        seqs: list[int] = []
        with trio.fail_after(timeout):
            while True:
                msg = await self.next(timeout)
                if msg is None or msg.event == "end":
                    return seqs, msg
                assert msg.event == "event", msg
                assert msg.id == str(msg.data["seq"])
                seqs.append(msg.data["seq"])

    async def messages_until_end(self, timeout: float = 30) -> tuple[list[Message], Message | None]:
        """Every message with an event name, then the "end" message (None if it just stopped)."""
        got: list[Message] = []
        with trio.fail_after(timeout):
            while True:
                msg = await self.next(timeout)
                if msg is None or msg.event == "end":
                    return got, msg
                got.append(msg)
