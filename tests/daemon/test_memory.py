"""The daemon's memory (choo_daemon/memory.py, choo_web/crowds.py): the daemon
process freezes what start-up made, so full collections stay short; and a
crowd's memory goes back to the system once it has left: the daemon runs on
the C allocator, its database process on CPython's own, and many streams
closing set off ``give_back``."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.lowlevel

from choo_daemon import memory
from choo_daemon.daemon import Daemon
from choo_web import crowds
from protocol.home import Home
from protocol.malloc import MALLOC_ENV, SYSTEM_MALLOC_ENV, wants_system_malloc
from tests.conftest import choo
from tests.daemon.test_outbox import status_json
from tests.web.support import bearer


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_the_daemon_runs_on_the_c_allocator_and_its_database_process_on_pythons(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MALLOC_ENV, raising=False)
    assert choo("daemon", "start", "--port", "0").returncode == 0
    try:
        pid = status_json()["pid"]
        assert environ(pid)[MALLOC_ENV] == "malloc"
        (database,) = children(pid)
        assert MALLOC_ENV not in environ(database)
        assert SYSTEM_MALLOC_ENV not in environ(database)
    finally:
        choo("daemon", "stop")


def test_a_daemon_started_by_hand_starts_again_on_the_c_allocator(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MALLOC_ENV, raising=False)
    argv = [sys.executable, "-m", "choo_daemon", "--home", str(home.root), "--port", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not children(proc.pid):
            assert time.monotonic() < deadline and proc.poll() is None, "no database process"
            time.sleep(0.05)
        assert environ(proc.pid)[MALLOC_ENV] == "malloc", "the same process, started again"
        # __main__ names the variables itself (before any import): the same names.
        assert environ(proc.pid)[SYSTEM_MALLOC_ENV] == "1"
        (database,) = children(proc.pid)
        assert not {MALLOC_ENV, SYSTEM_MALLOC_ENV} & environ(database).keys()
    finally:
        proc.terminate()
        proc.wait(30)


def test_an_allocator_the_user_chose_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MALLOC_ENV, "pymalloc")
    assert not wants_system_malloc(os.environ)
    monkeypatch.setenv(MALLOC_ENV, "")
    assert wants_system_malloc(os.environ)


def test_giving_back_collects_cycles_first(monkeypatch: pytest.MonkeyPatch) -> None:
    collected: list[int] = []

    def collect() -> int:
        collected.append(1)
        return 0

    monkeypatch.setattr("gc.collect", collect)
    memory.give_back()
    assert collected == [1]


async def test_a_crowd_leaving_is_told_twice(autojump_clock: trio.testing.MockClock) -> None:
    crowd, told = crowds.Crowds(), []

    async def stream() -> AsyncIterator[bytes]:
        yield b"x"
        await trio.sleep_forever()

    async def open_streams(count: int, nursery: trio.Nursery) -> list[trio.CancelScope]:
        scopes = []
        for _ in range(count):
            scope = trio.CancelScope()

            async def read(scope: trio.CancelScope = scope) -> None:
                with scope:
                    async for _ in crowd.counted(stream()):
                        pass

            nursery.start_soon(read)
            scopes.append(scope)
        await trio.lowlevel.checkpoint()
        return scopes

    def close(scopes: list[trio.CancelScope], count: int) -> None:
        for scope in scopes[:count]:
            scope.cancel()
        del scopes[:count]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(crowd.watch, lambda: told.append(crowd.open))
        scopes = await open_streams(150, nursery)
        await trio.sleep(0.1)  # opened and closed between two looks: still seen
        close(scopes, 95)
        await trio.sleep(crowds.LOOK_EVERY_S * 3)
        assert crowd.open == 55 and told == [], "95 fewer than the peak of 150 is no crowd"
        close(scopes, 45)
        await trio.sleep(crowds.LOOK_EVERY_S)
        assert told == [], "not while they leave: once their number holds for a look"
        await trio.sleep(crowds.LOOK_EVERY_S)
        assert told == [10] and crowd.statistics() == {"streams_open": 10, "crowds_left": 0}
        await trio.sleep(crowds.STALE_S - crowds.LOOK_EVERY_S)
        assert told == [10], "again only once the streams' last deadlines have passed"
        await trio.sleep(crowds.LOOK_EVERY_S * 2)
        assert told == [10, 10] and crowd.statistics() == {"streams_open": 10, "crowds_left": 1}
        await trio.sleep(crowds.STALE_S * 2)
        assert told == [10, 10], "twice; the peak is now what is left"
        nursery.cancel_scope.cancel()


def test_choo_daemon_start_puts_the_daemon_on_the_c_allocator_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from choo import daemonctl

    monkeypatch.delenv(MALLOC_ENV, raising=False)
    env = daemonctl.daemon_env()
    assert (env[MALLOC_ENV], env[SYSTEM_MALLOC_ENV]) == ("malloc", "1")
    monkeypatch.setenv(MALLOC_ENV, "debug")
    assert daemonctl.daemon_env()[MALLOC_ENV] == "debug"
    assert SYSTEM_MALLOC_ENV not in daemonctl.daemon_env()


def test_the_daemon_process_freezes_what_start_up_made(home: Home) -> None:
    assert choo("daemon", "start", "--port", "0").returncode == 0
    try:
        web = status_json()["web"]
        health = httpx.get(web + "/api/health", headers=bearer(home)).json()
        # Its modules and web app: tens of thousands of objects a full
        # collection no longer walks (memory.settle).
        assert health["gc"]["frozen"] > 10_000, health["gc"]
        assert len(health["gc"]["collections"]) == 3
    finally:
        choo("daemon", "stop")


async def test_a_daemon_inside_another_program_freezes_nothing(daemon: Daemon, home: Home) -> None:
    before = gc.get_freeze_count()
    assert daemon.web_url is not None
    async with httpx.AsyncClient(headers=bearer(home)) as client:
        health = (await client.get(daemon.web_url + "/api/health")).json()
    # The test process's own objects stay collectable: only __main__ settles.
    assert health["gc"]["frozen"] == before == gc.get_freeze_count() == 0
