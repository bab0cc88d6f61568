"""The database process: its life tied to the daemon's, batches in flight kept in order."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

from choo_daemon.daemon import Daemon
from choo_daemon.dblink import DbProcess
from choo_daemon.dbmsg import Open
from choo_daemon.dbwire import SharedFile
from protocol.home import Home
from tests.daemon import dbhooks
from tests.daemon.test_lifecycle import alive, running_pid, start, stopper, wait_until
from tests.daemon.test_session import NOW, Peer, event, stored

__all__ = ["stopper"]  # a fixture of the lifecycle tests, used here too


def dbproc_pids(daemon_pid: int) -> list[int]:
    """The daemon's children running choo_daemon.dbproc."""
    found = []
    for task in Path(f"/proc/{daemon_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"choo_daemon.dbproc" in argv:
                found.append(int(pid))
    return found


def test_the_daemon_stops_with_a_clear_error_if_its_database_process_dies(
    home: Home, stopper: None
) -> None:
    start()
    pid = running_pid(home)
    [child] = dbproc_pids(pid)
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: not alive(pid), what="the daemon to stop")
    log = home.log.read_text()
    assert f"the database process (pid {child}) ended with signal 9" in log
    assert "start the daemon again" in log
    assert not home.socket.exists()


def test_the_database_process_ends_with_a_daemon_killed_outright(home: Home, stopper: None) -> None:
    start()
    pid = running_pid(home)
    [child] = dbproc_pids(pid)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(child), what="the database process to end")


async def test_batches_sent_behind_one_that_failed_are_stored_after_it(
    daemon: Daemon, home: Home
) -> None:
    """Two batches in flight as the disk fills: the first starts run_b, the
    second holds run_b's events. Stored the other way round, the events would
    be refused (unknown run); in order, both pass once there is room."""
    peer = await Peer.connect(home)
    await peer.start_run("run_a")
    await daemon.writer.run_in_writer(dbhooks.limit_pages, 0)
    start_b = {
        "t": "run.start",
        "req": 2,
        "run": "run_b",
        "repo_path": "/repo",
        "started_at": NOW,
        "parallelism": 1,
        "total_units": 1,
    }
    # Enough of run_a's events to need a new page, and run_b's start, in one batch.
    await peer.send(*(event("run_a", n, payload={"x": "y" * 200}) for n in range(1, 301)), start_b)
    with trio.fail_after(10):
        while daemon.writer.failing is None:
            await trio.sleep(0.01)
    await peer.send(*(event("run_b", n) for n in range(1, 51)))
    with trio.move_on_after(0.3) as quiet:  # the second batch goes out, and is held back
        await peer.receive()
    assert quiet.cancelled_caught
    await daemon.writer.run_in_writer(dbhooks.limit_pages, None)
    answers = [await peer.receive()]
    while answers[-1] != {"t": "ack", "run": "run_b", "seq": 50}:
        answers.append(await peer.receive())
    assert not [a for a in answers if a["t"] == "error"]
    started = answers.index({"t": "ok", "req": 2, "data": {"run": "run_b", "created": True}})
    assert {"t": "ack", "run": "run_a", "seq": 300} in answers[:started]
    assert stored(home, "select run_id, count(*) from events group by run_id") == [
        ("run_a", 300),
        ("run_b", 50),
    ]


def test_a_request_larger_than_the_memory_file_grows_it() -> None:
    writer = SharedFile.create()
    reader = SharedFile(os.dup(writer.fd))  # as the database process sees it
    try:
        small = ("apply", [b"x" * 100])
        assert reader.load(writer.dump(small)) == small
        big = ("apply", [os.urandom(1 << 20) for _ in range(2 * SharedFile.INITIAL_SIZE >> 20)])
        assert reader.load(writer.dump(big)) == big
        assert reader.load(writer.dump(small)) == small  # and smaller ones after
    finally:
        writer.close()
        reader.close()


async def test_a_database_process_that_does_not_close_is_killed(tmp_path: Path) -> None:
    db = DbProcess.spawn(tmp_path / "history.db")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.serve_answers)
        await db.request(Open())
        os.kill(db.proc.pid, signal.SIGSTOP)  # it will answer nothing, "close" included
        with trio.fail_after(10):
            await db.aclose(timeout=0.5)
    assert db.proc.returncode == -signal.SIGKILL
