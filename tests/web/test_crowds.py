"""Many streams closing set off the daemon's ``give_back`` (choo_web/crowds.py,
choo_daemon/memory.py; the unit tests are in tests/daemon/test_memory.py)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest
import trio

from choo_daemon.daemon import Daemon
from choo_web import crowds
from tests.web.support import open_sse


@pytest.fixture
def given_back(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of the daemon's ``give_back`` (patched before the daemon starts)."""
    calls: list[int] = []
    monkeypatch.setattr("choo_daemon.daemon.give_back", lambda: calls.append(1))
    return calls


async def test_a_hundred_live_viewers_leaving_gives_their_memory_back(
    given_back: list[int], daemon: Daemon, web: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crowds, "STALE_S", 0.0)  # the second time at the next look

    async def viewers() -> int:
        live: int = (await web.get("/api/health")).json()["live"]["live_viewers"]
        return live

    async with AsyncExitStack() as stack:
        for _ in range(crowds.CROWD):
            sse = await stack.enter_async_context(open_sse(web, "/api/live"))
            assert (await sse.next()) is not None  # its "ready": the viewer is counted
        assert await viewers() == crowds.CROWD
        assert given_back == []
    with trio.fail_after(60):
        while not given_back:
            await trio.sleep(0.1)
    assert await viewers() == 0
    assert given_back == [1]
    live = (await web.get("/api/health")).json()["live"]
    assert live["streams_open"] == 0 and live["crowds_left"] == 0, "counted once given back twice"
    with trio.fail_after(60):
        while len(given_back) < 2:
            await trio.sleep(0.1)
    live = (await web.get("/api/health")).json()["live"]
    assert live["streams_open"] == 0 and live["crowds_left"] == 1
