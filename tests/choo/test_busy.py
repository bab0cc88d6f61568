"""A daemon with every connection taken (PROTOCOL.md: 256, then ``busy``):
clients back off and come back, and ``choo daemon status`` says it runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import trio

import protocol
from choo.client import (
    BUSY_FIRST,
    BUSY_MAX,
    DaemonClient,
    DaemonRefused,
    busy_backoff,
    open_daemon_client,
)
from choo_daemon.listener import open_unix_listener
from protocol.home import Home
from tests.conftest import choo

MAX_CONNECTIONS = 256  # PROTOCOL.md section 9


@pytest.mark.parametrize(
    ("tries", "ceiling"),
    [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6), (6, 2.0), (7, 2.0), (100, 2.0)],
)
def test_the_busy_backoff_doubles_from_a_tenth_of_a_second_to_two_with_jitter(
    tries: int, ceiling: float
) -> None:
    assert (BUSY_FIRST, BUSY_MAX) == (0.1, 2.0)
    waits = [busy_backoff(tries) for _ in range(200)]
    assert all(ceiling / 2 <= w <= ceiling for w in waits), (min(waits), max(waits))
    assert len(set(waits)) > 100, "no jitter"


@dataclass
class Holders:
    """Client connections that keep a daemon's slots taken until released."""

    releases: list[trio.Event] = field(default_factory=list)

    def release_one(self) -> None:
        self.releases.pop().set()

    def release_all(self) -> None:
        while self.releases:
            self.release_one()


def busy_refusals(home: Home) -> int:
    """How many connections the daemon has refused as busy (its log says so)."""
    return home.log.read_text().count("busy: all")


async def wait_for(condition: Callable[[], object], what: str) -> None:
    with trio.move_on_after(60):
        while not condition():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def full_daemon(daemon_process: Home, nursery: trio.Nursery) -> AsyncIterator[Holders]:
    """A real daemon process whose 256 connections are all taken."""
    holders = Holders()

    async def hold(
        release: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with open_daemon_client(daemon_process, name="holder", connect_timeout=30):
            task_status.started()
            await release.wait()

    for _ in range(MAX_CONNECTIONS):
        release = trio.Event()
        holders.releases.append(release)
        await nursery.start(hold, release)
    yield holders
    holders.release_all()


async def choo_async(*args: str) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(lambda: choo(*args))


async def test_a_busy_daemon_is_shown_as_running_and_busy(home: Home, full_daemon: Holders) -> None:
    pid = int(home.pidfile.read_text().split()[0])
    shown = await choo_async("daemon", "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    text = " ".join(shown.stdout.split())
    assert "no daemon is running" not in text
    assert f"choo daemon running (pid {pid}) but busy" in text
    assert f"all {MAX_CONNECTIONS} connections are in use" in text
    assert "try again" in text

    as_json = await choo_async("daemon", "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["running"] is True and data["busy"] is True and data["pid"] == pid
    assert f"all {MAX_CONNECTIONS} connections are in use" in data["message"]

    # Starting one would not help: say so instead of waiting for nothing.
    started = await choo_async("daemon", "start", "--port", "0")
    assert started.returncode == 2
    assert f"already running (pid {pid}) but busy" in " ".join(started.stderr.split())


async def test_a_client_refused_as_busy_connects_once_a_connection_frees(
    home: Home, full_daemon: Holders, nursery: trio.Nursery
) -> None:
    before = busy_refusals(home)
    answered: list[dict[str, object]] = []

    async def latecomer() -> None:
        async with open_daemon_client(home, name="latecomer", connect_timeout=60) as client:
            answered.append(await client.status())

    nursery.start_soon(latecomer)
    # Refused at least twice, so it backed off and came back; still waiting.
    await wait_for(lambda: busy_refusals(home) >= before + 2, "the latecomer to be refused")
    assert answered == []
    full_daemon.release_one()
    await wait_for(lambda: answered, "the latecomer to connect")
    assert answered[0]["pid"] == int(home.pidfile.read_text().split()[0])
    print(
        f"{MAX_CONNECTIONS} connections held; the latecomer refused "
        f"{busy_refusals(home) - before} times, then served"
    )


async def test_a_busy_refusal_is_read_even_when_the_daemon_hung_up_before_our_hello(
    home: Home,
) -> None:
    """Under load the daemon may refuse, send ``busy`` and close before the
    client writes its hello; the write fails, but the refusal is still there."""
    home.root.mkdir(mode=0o700, exist_ok=True)
    listener = await open_unix_listener(home.socket)
    client = DaemonClient(home)
    async with listener:
        stream = await trio.open_unix_socket(str(home.socket))
        server = await listener.accept()
        busy = {"t": "error", "code": "busy", "message": "all 256 connections are in use"}
        await server.send_all(protocol.encode(busy))
        await server.aclose()
        with pytest.raises(DaemonRefused) as refused:
            await client._handshake(stream)
    assert refused.value.code == "busy"
