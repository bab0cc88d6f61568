"""DaemonClient keeps what the daemon has not acked and replays it after a
reconnect: nothing is lost and nothing is stored twice, even across a
SIGKILL of the daemon process."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.lowlevel
import trio.testing

from choo.client import DaemonClient, DaemonRefused, open_daemon_client
from choo_daemon.daemon import Daemon, DaemonOptions
from protocol.home import Home, read_pid
from tests.conftest import choo

NOW = "2026-01-20T14:30:52.123Z"
RUN = "run_20260120_143052_a1b2"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def stored(home: Home, run: str) -> dict[str, Any]:
    """What the database holds for ``run``, read through a read-only connection."""
    conn = apsw.Connection(str(home.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        [(count, distinct, top)] = conn.execute(
            "SELECT count(*), count(DISTINCT seq), max(seq) FROM events WHERE run_id = ?", (run,)
        ).fetchall()
        [(status, event_count, last_seq)] = conn.execute(
            "SELECT status, event_count, last_seq FROM runs WHERE id = ?", (run,)
        ).fetchall()
    finally:
        conn.close()
    return {
        "count": count,
        "distinct": distinct,
        "max": top,
        "status": status,
        "event_count": event_count,
        "last_seq": last_seq,
    }


def exactly(n: int, status: str = "completed") -> dict[str, Any]:
    """``stored()`` for a run holding seq 1..n, each once."""
    return {
        "count": n,
        "distinct": n,
        "max": n,
        "status": status,
        "event_count": n,
        "last_seq": n,
    }


async def start_run(client: DaemonClient, run: str = RUN) -> None:
    await client.start_run(run, repo_path="/repo", started_at=NOW, parallelism=4, total_units=1)


async def complete(client: DaemonClient, run: str = RUN) -> None:
    await client.complete_run(run, status="completed", completed_at=NOW, completed_units=1)


def send(client: DaemonClient, first: int, last: int, run: str = RUN) -> None:
    for seq in range(first, last + 1):
        client.send_event(
            run,
            seq,
            "task.output",
            time=NOW,
            unit="u1",
            task=1,
            payload={"line": f"output line {seq}"},
        )


def break_connections(daemon: Daemon) -> None:
    """Cut every client's connection from the daemon's side, as a failing peer would:
    acks not yet written are lost with it."""
    for session in list(daemon.sessions):
        session.stream.socket.shutdown(socket.SHUT_RDWR)


# -- the acceptance test: four orchestrators and a SIGKILL -------------------------

CLIENTS = 4
EVENTS = 20_000
# At most this many events in flight per client, so that the four streams advance
# together and the kill finds every one of them part-way, with events unacked.
WINDOW = 2_000
KILL_AFTER = 5_000  # acked events of every client before the kill
PAUSE_AT = 15_000  # and no client goes past this before it


async def test_four_clients_lose_nothing_when_the_daemon_is_killed(home: Home) -> None:
    started = await trio.to_thread.run_sync(choo, "daemon", "start", "--port", "0")
    assert started.returncode == 0, started.stderr
    pid = read_pid(home.pidfile)
    assert pid is not None and alive(pid)

    runs = [f"run_20260120_143052_c{i:03d}" for i in range(CLIENTS)]
    sent = [0] * CLIENTS
    killed = trio.Event()

    async def orchestrate(
        i: int, *, task_status: trio.TaskStatus[DaemonClient] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with open_daemon_client(home, name=f"orchestrator-{i}") as client:
            await start_run(client, runs[i])
            task_status.started(client)
            for seq in range(1, EVENTS + 1):
                client.send_event(
                    runs[i],
                    seq,
                    "task.output",
                    time=NOW,
                    unit=f"u{i}",
                    task=1,
                    payload={"line": f"client {i} line {seq}"},
                )
                sent[i] = seq
                if seq % 250 == 0:
                    await trio.lowlevel.checkpoint()  # let the sender flush
                    if seq > WINDOW:
                        await client.wait_acked(runs[i], seq - WINDOW)
                if seq == PAUSE_AT:
                    await killed.wait()
            await complete(client, runs[i])

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            clients = [await nursery.start(orchestrate, i) for i in range(CLIENTS)]
            # Kill once every client has had part of its events acked, none finished.
            while not all(
                sent[i] - c.unacked(runs[i]) >= KILL_AFTER for i, c in enumerate(clients)
            ):
                await trio.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
            while alive(pid):
                await trio.sleep(0.01)
            killed.set()  # what the clients send now waits for the next daemon
            again = await trio.to_thread.run_sync(choo, "daemon", "start", "--port", "0")
            assert again.returncode == 0, again.stderr
            assert read_pid(home.pidfile) != pid

    for i, client in enumerate(clients):
        assert client.reconnects >= 1, f"client {i} never lost its connection"
        assert client.unacked() == 0
        assert stored(home, runs[i]) == exactly(EVENTS), runs[i]


# -- replay with an in-process daemon ------------------------------------------------


async def test_replay_after_a_broken_connection_stores_each_event_once(
    daemon: Daemon, home: Home
) -> None:
    async with open_daemon_client(home) as client:
        await start_run(client)
        send(client, 1, 20_000)
        with trio.fail_after(20):
            await client.wait_acked(RUN, 1)
        # Some are acked, the rest are in flight (read, committed or not yet
        # sent) when the connection breaks: they must all be replayed.
        assert client.unacked(RUN) > 0
        break_connections(daemon)
        send(client, 20_001, 25_000)
        with trio.fail_after(30):
            await complete(client)
        assert client.reconnects >= 1
    assert stored(home, RUN) == exactly(25_000)


async def test_complete_run_returns_once_every_event_is_stored(daemon: Daemon, home: Home) -> None:
    async with open_daemon_client(home) as client:
        await start_run(client)
        send(client, 1, 10_000)
        with trio.fail_after(30):
            await complete(client)
        # Straight after it returns, without waiting for anything else.
        assert client.unacked(RUN) == 0
        assert stored(home, RUN) == exactly(10_000)


async def _serve(
    daemon: Daemon,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    await daemon.serve(task_status=task_status)
    stopped.set()


async def test_a_request_made_while_disconnected_is_sent_after_reconnecting(
    home: Home, nursery: trio.Nursery
) -> None:
    first, first_stopped = Daemon(DaemonOptions(home=home, port=0)), trio.Event()
    await nursery.start(_serve, first, first_stopped)
    async with open_daemon_client(home) as client:
        first.request_shutdown()
        with trio.fail_after(10):
            await first_stopped.wait()
            while client.reconnects < 1:  # the client has noticed
                await trio.sleep(0.01)

        replied = trio.Event()

        async def start_while_down() -> None:
            await start_run(client)
            replied.set()

        nursery.start_soon(start_while_down)
        # Until every task waits (the client in its reconnect back-off): nobody answers.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert not replied.is_set()
        assert not home.socket.exists()
        send(client, 1, 1000)  # behind the request, as an orchestrator would

        second, second_stopped = Daemon(DaemonOptions(home=home, port=0)), trio.Event()
        await nursery.start(_serve, second, second_stopped)
        with trio.fail_after(10):
            await replied.wait()
            await complete(client)
    assert stored(home, RUN) == exactly(1000)
    second.request_shutdown()


async def test_a_fatal_error_is_raised_instead_of_reconnecting(daemon: Daemon, home: Home) -> None:
    async with open_daemon_client(home) as client:
        await start_run(client)
        # Valid events keep the writer busy while the refused ones queue up behind
        # them: the daemon refuses while its channel is full and the client still sends.
        send(client, 1, 20_000)
        send(client, 1, 50_000, run="never_started")
        with trio.fail_after(10), pytest.raises(DaemonRefused) as refused:
            await client.wait_acked("never_started")
        assert refused.value.code == "unknown_run"
        assert "never_started" in refused.value.message

        with pytest.raises(DaemonRefused):
            client.send_event(RUN, 20_001, "task.output", time=NOW)
        with trio.fail_after(5), pytest.raises(DaemonRefused):
            await start_run(client)
        with trio.fail_after(5), pytest.raises(DaemonRefused):
            await client.status()

        # The daemon hangs up, and the client does not come back.
        with trio.fail_after(10):
            while daemon.sessions:
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert client.reconnects == 0
        assert not daemon.sessions
