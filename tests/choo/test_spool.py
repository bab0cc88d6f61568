"""DaemonClient.spool: the file a client leaves for the next daemon when none
answers, its permissions, and a disk too full to hold it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from choo.client import DaemonClient, DaemonRefused, SpoolFailed
from choo_daemon.spool import read_work
from protocol.home import Home

NOW = "2026-01-20T14:30:52.123Z"


def client_with_events(home: Home, run: str, events: int) -> DaemonClient:
    """A client that never reached a daemon, holding ``events`` unacked events."""
    client = DaemonClient(home)
    for seq in range(1, events + 1):
        client.send_event(run, seq, "task.started", time=NOW, unit="u", payload={"n": seq})
    return client


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_a_spool_file_and_its_folder_are_private_whatever_the_umask(home: Home, umask: int) -> None:
    client = client_with_events(home, "run_private", 3)
    old = os.umask(umask)
    try:
        spooled = client.spool()
    finally:
        os.umask(old)
    assert spooled is not None
    path, events = spooled
    assert events == 3
    assert path.parent == home.spool
    assert mode(home.spool) == 0o700
    assert mode(path) == 0o600
    assert os.listdir(home.spool) == [path.name]  # no temporary file left
    (batch,) = read_work(path)
    assert batch.count == 3  # type: ignore[union-attr]


def test_spool_on_a_full_disk_raises_and_leaves_no_file(home: Home, full_spool: Path) -> None:
    client = client_with_events(home, "run_full", 200)
    with pytest.raises(SpoolFailed) as failed:
        client.spool()
    assert failed.value.events == 200
    assert failed.value.folder == full_spool
    assert "No space left on device" in failed.value.reason
    # Neither the spool file nor an empty or partial temporary one.
    assert os.listdir(full_spool) == ["filler"]
    # The client stops: what it held is gone with this process.
    with pytest.raises(DaemonRefused):
        client.send_event("run_full", 201, "task.started", time=NOW)
