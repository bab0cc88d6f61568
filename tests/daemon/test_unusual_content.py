"""Unusual but legal event content is stored and shown exactly as sent; a frame
over the limit is refused clearly without losing what came before it."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import msgpack
import pytest
import trio

import protocol
from choo_daemon.daemon import Daemon
from protocol.home import Home
from tests.daemon.test_session import Peer, event, stored
from tests.web.support import bearer

UNICODE = {
    "emoji": "deploy 🚀 done ✅ 👩‍👩‍👧‍👦 🇫🇷",
    "rtl": "שלום עולם مرحبا بالعالم",
    "combining": "e\u0301 n\u0303 a\u0308\u0301 Z̴̡̪͓̈́ͅ",
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 𠜎 \U0010fffd",
    "controls": "tab\tnew\nline\rcarriage \x1b[31mred\x1b[0m \u2028 \u200f \ufeff",
    "nul": "before\x00after\x00",
    "quotes": "\"'\\ </script><b>bold</b> &amp;",
}


def nested(depth: int) -> Any:
    value: Any = {"leaf": "bottom 🌱", "n": depth}
    for level in range(depth - 1):
        value = {"level": level, "child": value} if level % 2 else [level, value]
    return value


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def just_under_the_limit(run: str, seq: int) -> dict[str, Any]:
    """An event whose frame is a few bytes under MAX_FRAME."""
    msg = event(run, seq, payload={"blob": ""})
    room = protocol.MAX_FRAME - (len(protocol.encode(msg)) - 4) - 8
    piece = "ab€🙂"  # 1 + 1 + 3 + 4 bytes of UTF-8
    text = piece * (room // 9)
    text += "x" * (room - len(text.encode()))
    msg["payload"]["blob"] = text
    assert protocol.MAX_FRAME - 16 < len(protocol.encode(msg)) - 4 <= protocol.MAX_FRAME
    return msg


async def events_of(daemon: Daemon, run: str) -> list[dict[str, Any]]:
    assert daemon.web_url is not None
    async with httpx.AsyncClient(
        base_url=daemon.web_url, headers=bearer(daemon.home), timeout=30
    ) as web:
        response = await web.get(f"/api/history/runs/{run}/events?limit=1000")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def wait_acked(peer: Peer, run: str, seq: int) -> None:
    acked = 0
    while acked < seq:
        reply = await peer.receive(timeout=30)
        assert reply == {"t": "ack", "run": run, "seq": reply.get("seq")}, reply
        acked = reply["seq"]


async def test_unusual_content_is_stored_and_shown_intact(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_odd")
    sent = [
        event("run_odd", 1, unit="ünït-🚀", payload=dict(UNICODE), error=UNICODE["nul"]),
        event("run_odd", 2, type="task.started", payload={"title": UNICODE["rtl"]},
              error=UNICODE["combining"] + UNICODE["astral"]),
        event("run_odd", 3, payload={"deep": nested(200)}),
        just_under_the_limit("run_odd", 4),
        event("run_odd", 5, payload={UNICODE["emoji"]: UNICODE["astral"], "": None, "f": 1.5}),
    ]  # fmt: skip
    for msg in sent:
        await peer.send(msg)
    await wait_acked(peer, "run_odd", 5)

    shown = await events_of(daemon, "run_odd")
    assert [e["seq"] for e in shown] == [1, 2, 3, 4, 5]
    for msg, got in zip(sent, shown, strict=True):
        assert got["payload"] == msg["payload"]
        assert got["error"] == msg.get("error")
        assert got["unit"] == msg.get("unit")
    assert depth_of(shown[2]["payload"]) == 201
    assert len(shown[3]["payload"]["blob"].encode()) > protocol.MAX_FRAME - 200
    # The store holds the very characters, NULs included.
    assert stored(home, "select error from events where seq = 1") == [(UNICODE["nul"],)]


async def test_nesting_deeper_than_json_takes_is_a_clear_error(daemon: Daemon, home: Home) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_deep")
    await peer.send(event("run_deep", 1, payload={"deep": nested(250)}))
    assert await peer.receive() == {"t": "ack", "run": "run_deep", "seq": 1}
    await peer.send(event("run_deep", 2, payload={"deep": nested(300)}))
    error = await peer.receive()
    assert error["t"] == "error" and error["code"] == "bad_field"
    assert "254 levels" in error["message"]
    assert await peer.closed()
    assert stored(home, "select seq from events where run_id = 'run_deep'") == [(1,)]


@pytest.mark.parametrize("over", [1, 4096])
async def test_a_frame_over_the_limit_is_refused_and_nothing_before_it_is_lost(
    daemon: Daemon, home: Home, over: int
) -> None:
    peer = await Peer.connect(home)
    await peer.start_run("run_big")
    before = [event("run_big", n, payload={"n": n, "text": UNICODE["emoji"]}) for n in (1, 2, 3)]
    too_big = just_under_the_limit("run_big", 4)
    too_big["payload"]["blob"] += "y" * (over + 16)
    body = msgpack.packb(too_big, use_bin_type=True)  # encode() would refuse it
    assert len(body) > protocol.MAX_FRAME
    frame = protocol.frames.HEADER.pack(len(body)) + body
    # All in one write: the good events and the oversized frame behind them.
    # The daemon hangs up once it has read the frame's length, so the rest of
    # the write fails as it would for any client.
    with contextlib.suppress(trio.BrokenResourceError):
        await peer.stream.send_all(b"".join(protocol.encode(m) for m in before) + frame)
    replies: list[dict[str, Any]] = []
    while not any(r["t"] == "error" for r in replies) or not any(
        r.get("seq") == 3 for r in replies
    ):
        replies.append(await peer.receive())
    error = next(r for r in replies if r["t"] == "error")
    assert error["code"] == "frame_too_large"
    assert str(protocol.MAX_FRAME) in error["message"] and str(len(body)) in error["message"]
    # Closed with our unread bytes in its buffer, a reset is a close too.
    with contextlib.suppress(trio.BrokenResourceError):
        assert await peer.closed()
    shown = await events_of(daemon, "run_big")
    assert [e["payload"] for e in shown] == [m["payload"] for m in before]
    # The daemon goes on for everyone else.
    other = await Peer.connect(home)
    assert (await other.request({"t": "status", "req": 1}))["t"] == "ok"
