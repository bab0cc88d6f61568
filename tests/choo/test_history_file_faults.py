"""history.db deleted, or another file moved into its place, while a real
daemon (a subprocess) runs: the daemon finds it before the next ack, stops
acking and says why; after a restart the client replays, and every event it
sent after the change is stored in the new file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import apsw
import pytest
import trio

from choo.client import DaemonClient, open_daemon_client
from choo_daemon import store
from protocol.home import Home
from tests.conftest import choo

NOW = "2026-01-20T14:30:52.123Z"
RUN = "run_20260120_143052_a1b2"
OTHER = "run_20251224_090000_0ther"  # in the file moved into place
BEFORE, AFTER = 500, 1_000  # events acked before the change; all sent


def send(client: DaemonClient, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        client.send_event(
            RUN, seq, "task.output", time=NOW, unit="u1", task=1, payload={"line": f"line {seq}"}
        )


def delete(home: Home) -> str:
    home.database.unlink()
    return "was deleted while the daemon ran"


def replace(home: Home) -> str:
    """Move another history (one run of its own, closed cleanly) over history.db."""
    other = home.root / "other.db"
    conn = store.open_write_connection(other)
    with conn:
        store.create_run(
            conn, run_id=OTHER, repo_path="/other", started_at=NOW, parallelism=1, total_units=1
        )
    conn.close()
    os.replace(other, home.database)
    return "was replaced by another file while the daemon ran"


def stored(home: Home) -> dict[str, Any]:
    conn = apsw.Connection(str(home.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM events WHERE run_id = ?", (RUN,))]
        runs = dict(conn.execute("SELECT id, status FROM runs").fetchall())
    finally:
        conn.close()
    return {"seqs": sorted(seqs), "runs": runs}


async def daemon_status(home: Home) -> dict[str, Any]:
    result = await trio.to_thread.run_sync(choo, "daemon", "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


@pytest.mark.parametrize("change", [delete, replace], ids=["deleted", "replaced"])
async def test_a_history_db_changed_under_the_daemon_acks_nothing_more_and_loses_nothing(
    home: Home, change: Callable[[Home], str]
) -> None:
    started = await trio.to_thread.run_sync(choo, "daemon", "start", "--port", "0")
    assert started.returncode == 0, started.stderr
    try:
        async with open_daemon_client(home, name="orchestrator") as client:
            await client.start_run(
                RUN, repo_path="/repo", started_at=NOW, parallelism=1, total_units=1
            )
            send(client, 1, BEFORE)
            with trio.fail_after(30):
                await client.wait_acked(RUN, BEFORE)

            says = change(home)
            send(client, BEFORE + 1, AFTER)
            with trio.fail_after(30):
                while not (status := await daemon_status(home))["write_error"]:
                    await trio.sleep(0.05)
            assert f"{home.database} {says}" in status["write_error"]
            assert "choo daemon restart" in status["write_error"]
            shown = " ".join(
                (await trio.to_thread.run_sync(choo, "daemon", "status")).stdout.split()
            )
            assert f"write error {home.database} {says}" in shown
            assert says in home.log.read_text()
            # Found before any of them was acked: the client holds every one.
            assert client.unacked(RUN) == AFTER - BEFORE

            restarted = await trio.to_thread.run_sync(choo, "daemon", "restart", "--port", "0")
            assert restarted.returncode == 0, restarted.stdout + restarted.stderr
            with trio.fail_after(60):
                await client.complete_run(RUN, status="completed", completed_at=NOW)
            assert client.reconnects >= 1
            assert client.unacked(RUN) == 0
    finally:
        await trio.to_thread.run_sync(choo, "daemon", "stop")

    after = stored(home)
    # What was acked before the change went with the old file; everything
    # sent after it is in the new one, each event once.
    assert after["seqs"] == list(range(BEFORE + 1, AFTER + 1))
    assert after["runs"][RUN] == "completed"
    if change is replace:
        assert after["runs"][OTHER] == "running", "the file moved into place is kept as it was"
    else:
        assert set(after["runs"]) == {RUN}
