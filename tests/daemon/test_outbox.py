"""Continuous OTLP export: the outbox table and the daemon's sender.

A run is put in the outbox in the transaction that ends it, only when export
is configured; the sender sends it to a real (minimal) OTLP/HTTP receiver,
keeps it through failures with growing pauses, and across restarts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.lowlevel

from choo_daemon import store
from choo_daemon.daemon import Daemon
from choo_daemon.dbmsg import RequestOp
from choo_daemon.dbproc import Applier
from choo_daemon.orphans import stop_run
from choo_daemon.outbox import ExportConfigError, OtlpTarget, target_from_env
from choo_daemon.store.outbox import export_sent, outbox_state
from protocol.home import Home
from protocol.otlp import trace_id
from tests.conftest import choo
from tests.daemon.otlp_receiver import Receiver, wait_for
from tests.daemon.test_faults import start_daemon
from tests.daemon.test_session import NOW, Peer, complete, stored

# -- the table, as the database process fills it ----------------------------------


def start_msg(run: str) -> dict[str, Any]:
    return {
        "t": "run.start",
        "req": 1,
        "run": run,
        "repo_path": "/repo",
        "started_at": NOW,
        "parallelism": 1,
        "total_units": 1,
    }


def resume_msg(run: str, token: str) -> dict[str, Any]:
    return {"t": "run.resume", "req": 2, "run": run, "time": NOW, "token": token}


def apply(applier: Applier, *messages: dict[str, Any]) -> None:
    out = applier.apply([RequestOp(0, m) for m in messages])
    assert not out.fatal and all(r["t"] == "ok" for _, r in out.replies), out


def outbox(conn: apsw.Connection) -> list[tuple[str, int]]:
    return list(conn.execute("SELECT run_id, generation FROM otlp_outbox ORDER BY run_id"))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    conn = store.open_write_connection(tmp_path / "history.db")
    yield conn
    conn.close()


def test_a_run_is_put_in_the_outbox_by_the_request_that_ends_it(conn: apsw.Connection) -> None:
    applier = Applier(conn, outbox=True)
    apply(applier, start_msg("run_a"))
    assert outbox(conn) == []  # running: nothing to send yet
    apply(applier, complete("run_a", 3))
    assert outbox(conn) == [("run_a", 1)]
    assert outbox_state(conn)["next"] == {"run_id": "run_a", "generation": 1, "attempts": 0}


def test_with_export_off_nothing_is_put_in_the_outbox(conn: apsw.Connection) -> None:
    applier = Applier(conn)  # the daemon's default: export.otlp.endpoint not set
    for n in range(20):
        apply(applier, start_msg(f"run_{n}"), complete(f"run_{n}", 3))
    with conn:
        assert stop_run(conn, "run_0", "gone") is None  # not running: no stop
    assert outbox(conn) == []
    assert outbox_state(conn)["pending"] == 0


def test_a_resumed_run_is_sent_again_when_it_ends_again(conn: apsw.Connection) -> None:
    applier = Applier(conn, outbox=True)
    apply(applier, start_msg("run_r"), complete("run_r", 3))
    assert export_sent(conn, "run_r", 1)
    assert outbox(conn) == []

    apply(applier, resume_msg("run_r", "tok1"))
    assert outbox(conn) == []  # running again: its end will tell
    apply(applier, complete("run_r", 4))
    assert outbox(conn) == [("run_r", 1)]

    # Ended again before it was sent (a quick resume): one row, a new generation.
    apply(applier, resume_msg("run_r", "tok2"), complete("run_r", 5))
    assert outbox(conn) == [("run_r", 2)]
    # The send of generation 1 that was under way does not take the new end with it.
    assert not export_sent(conn, "run_r", 1)
    assert outbox(conn) == [("run_r", 2)]
    assert export_sent(conn, "run_r", 2)
    assert outbox(conn) == []


def test_a_run_the_daemon_stops_is_put_in_the_outbox(conn: apsw.Connection) -> None:
    apply(Applier(conn, outbox=True), start_msg("run_s"))
    assert stop_run(conn, "run_s", "its orchestrator vanished", True) == 1
    assert outbox(conn) == [("run_s", 1)]


def test_pruning_a_run_takes_it_out_of_the_outbox(conn: apsw.Connection) -> None:
    apply(Applier(conn, outbox=True), start_msg("run_p"), complete("run_p", 3))
    with conn:
        assert store.delete_runs_older_than(conn, "2099-01-01T00:00:00.000Z", limit=10) == ["run_p"]
    assert outbox(conn) == []


def test_the_daemon_reads_its_export_target_from_its_environment() -> None:
    assert target_from_env({}) is None
    env = {
        "CHOO_EXPORT_OTLP_ENDPOINT": "http://127.0.0.1:6006",
        "CHOO_EXPORT_OTLP_HEADERS": '{"authorization": "Bearer k"}',
    }
    assert target_from_env(env) == OtlpTarget(
        "http://127.0.0.1:6006", {"authorization": "Bearer k"}
    )
    with pytest.raises(ExportConfigError, match="CHOO_EXPORT_OTLP_ENDPOINT"):
        target_from_env({"CHOO_EXPORT_OTLP_ENDPOINT": "localhost:4318"})
    with pytest.raises(ExportConfigError, match="CHOO_EXPORT_OTLP_HEADERS"):
        target_from_env({**env, "CHOO_EXPORT_OTLP_HEADERS": '{"x-n": 1}'})


# -- the sender, in a daemon --------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


async def exporting(nursery: trio.Nursery, home: Home, url: str, **options: Any) -> Daemon:
    options.setdefault("export_retry_max", 0.3)
    options.setdefault("export_timeout", 2.0)
    return await start_daemon(nursery, home, export=OtlpTarget(url, {"x-team": "t1"}), **options)


async def record_run(home: Home, run: str, req: int = 1) -> None:
    """A run of one unit, from its start to its end, over the daemon's socket."""
    peer = await Peer.connect(home)
    assert (await peer.start_run(run, req=req))["t"] == "ok"
    unit = {"t": "event", "run": run, "time": NOW, "unit": "a"}
    await peer.send({**unit, "seq": 1, "type": "unit.started"})
    await peer.send({**unit, "seq": 2, "type": "unit.completed"})
    await peer.send(complete(run, req + 1))
    while (reply := await peer.receive())["t"] == "ack":
        pass
    assert reply["t"] == "ok", reply
    await peer.stream.aclose()


async def wait_export(daemon: Daemon, what: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    """The daemon's export status, once ``check(status)`` holds."""
    with trio.fail_after(timeout):
        while not check(status := daemon.status()["export"]):
            await trio.sleep(0.05)
    return status


def trace_of(run: str) -> str:
    return f"{trace_id(run):032x}"


async def test_a_run_that_ends_is_sent_and_leaves_the_outbox(
    home: Home, nursery: trio.Nursery, receiver: Receiver
) -> None:
    daemon = await exporting(nursery, home, receiver.url)
    await record_run(home, "run_sent")
    status = await wait_export(daemon, "the run sent", lambda s: s["sent"] == 1)
    assert status["outbox"] == 0 and status["last_error"] is None
    assert status["endpoint"] == receiver.url
    names = {name for _, name in receiver.spans_of(trace_of("run_sent"))}
    assert names == {"choo run run_sent", "unit a"}
    assert receiver.headers[-1]["x-team"] == "t1"  # export.otlp.headers
    assert stored(home, "select count(*) from otlp_outbox") == [(0,)]
    daemon.request_shutdown()


async def test_a_refusing_backend_keeps_the_run_with_growing_pauses_then_it_drains(
    home: Home, nursery: trio.Nursery, receiver: Receiver
) -> None:
    receiver.status = 400  # refused at once (the exporter does not retry a 400)
    daemon = await exporting(nursery, home, receiver.url, export_retry_max=0.4)
    await record_run(home, "run_kept")
    status = await wait_export(daemon, "a failure", lambda s: s["last_error"] is not None)
    assert "HTTP 400" in status["last_error"] and status["outbox"] == 1
    with trio.fail_after(60):
        while stored(home, "select attempts from otlp_outbox")[0][0] < 4:
            await trio.sleep(0.05)
    [(attempts, error, tried, retry)] = stored(
        home, "select attempts, last_error, last_try_at, next_try_at from otlp_outbox"
    )
    assert attempts >= 4 and "HTTP 400" in error and tried < retry
    # Capped: the pause after many failures is no longer than export_retry_max.
    assert seconds_between(tried, retry) <= 0.4 + 0.01
    assert daemon.status()["export"]["sent"] == 0

    receiver.status = 200
    status = await wait_export(daemon, "the outbox drained", lambda s: s["outbox"] == 0)
    assert status["sent"] == 1 and status["last_error"] is None
    assert receiver.spans_of(trace_of("run_kept"))
    daemon.request_shutdown()


def seconds_between(a: str, b: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


async def test_the_outbox_survives_a_restart_and_the_next_daemon_sends_it(
    home: Home, nursery: trio.Nursery, receiver: Receiver
) -> None:
    receiver.stop()  # the backend is down
    first = await exporting(nursery, home, receiver.url)
    await record_run(home, "run_one")
    await record_run(home, "run_two")
    status = await wait_export(first, "two runs waiting", lambda s: s["outbox"] == 2)
    await wait_export(first, "a failure", lambda s: s["last_error"] is not None)
    assert "connection refused" in first.status()["export"]["last_error"]
    first.request_shutdown()
    with trio.fail_after(30):
        while home.socket.exists():
            await trio.sleep(0.05)
    assert stored(home, "select run_id from otlp_outbox order by run_id") == [
        ("run_one",),
        ("run_two",),
    ]

    receiver.start()  # back, on the same port
    second = await exporting(nursery, home, receiver.url)
    status = await wait_export(second, "the outbox drained", lambda s: s["outbox"] == 0)
    assert status["sent"] == 2
    assert {trace_of("run_one"), trace_of("run_two")} <= receiver.traces()
    second.request_shutdown()


async def test_a_daemon_without_export_keeps_no_outbox_and_sends_nothing(
    daemon: Daemon, home: Home, receiver: Receiver
) -> None:
    await record_run(home, "run_quiet")
    assert stored(home, "select status from runs") == [("completed",)]
    assert stored(home, "select count(*) from otlp_outbox") == [(0,)]
    export = daemon.status()["export"]
    assert export["endpoint"] is None and export["sent"] == 0
    assert receiver.requests == 0


# -- the daemon process: OpenTelemetry stays out of it unless it sends --------------


def status_json() -> dict[str, Any]:
    result = choo("daemon", "status", "--json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


@pytest.fixture
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's own (empty) user config, and no export in the environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for var in ("CHOO_EXPORT_OTLP_ENDPOINT", "CHOO_EXPORT_OTLP_HEADERS"):
        monkeypatch.delenv(var, raising=False)


async def test_a_daemon_without_export_never_loads_opentelemetry(
    home: Home, own_config: None
) -> None:
    assert choo("daemon", "start", "--port", "0").returncode == 0
    try:
        await record_run(home, "run_plain")
        export = status_json()["export"]
    finally:
        choo("daemon", "stop")
    assert export == {
        "endpoint": None,
        "outbox": 0,
        "sent": 0,
        "last_error": None,
        "last_error_at": None,
        "next_try_at": None,
        "otel_loaded": False,
    }


async def test_a_daemon_with_export_loads_opentelemetry_only_to_send(
    home: Home, receiver: Receiver, own_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOO_EXPORT_OTLP_ENDPOINT", receiver.url)
    assert choo("daemon", "start", "--port", "0").returncode == 0
    try:
        assert status_json()["export"]["otel_loaded"] is False  # nothing sent yet
        await record_run(home, "run_out")
        wait_for(lambda: status_json()["export"]["sent"] == 1, "the run sent")
        export = status_json()["export"]
        assert export["endpoint"] == receiver.url and export["otel_loaded"] is True
        assert receiver.spans_of(trace_of("run_out"))
        text = choo("daemon", "status").stdout
        assert "OTLP export" in text and receiver.url in text
        assert "0 runs to send, 1 sent" in text
    finally:
        choo("daemon", "stop")


# -- the pauses between tries, on trio's virtual clock ------------------------------


class Store:
    """The outbox as the sender sees it, without a database: one run waiting."""

    def __init__(self) -> None:
        self.ready = trio.Event()
        self.ready.set()
        self.rows = [{"run_id": "run_b", "generation": 1, "attempts": 0}]
        self.failed: list[str] = []

    async def read(self, fn: Any, *args: Any) -> Any:
        if fn is outbox_state:
            row = self.rows[0] if self.rows else None
            return {"pending": len(self.rows), "next": row, "last_error": None, "last_try_at": None}
        return {"id": args[0]}, []  # export_snapshot: the run, no events

    async def run_in_writer(self, fn: Any, *args: Any) -> Any:
        if fn is export_sent:
            self.rows.clear()
        else:
            self.failed.append(args[1])


async def test_the_pause_doubles_after_each_failure_up_to_the_cap(
    autojump_clock: trio.abc.Clock,
) -> None:
    from choo_daemon.outbox import Outbox
    from protocol.otlp import OtlpError

    tries: list[float] = []
    sent = trio.Event()

    def send(run: Any, events: Any, **_: Any) -> int:
        # In a worker thread. No other timer runs meanwhile, so that the
        # virtual clock stands still until the thread is done.
        tries.append(trio.from_thread.run_sync(trio.current_time))
        if len(tries) < 9:
            raise OtlpError("could not send run run_b to http://x/v1/traces: HTTP 503")
        trio.from_thread.run_sync(sent.set)
        return 1

    db = Store()
    box = Outbox(db, db, OtlpTarget("http://x"), retry_first=1.0, retry_max=30.0, send=send)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(box.serve)
        await sent.wait()
        while box.sent == 0:  # the send's thread returns, then the row is deleted
            await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in pairwise(tries)]
    tops = [min(2.0**n, 30.0) for n in range(8)]  # 1, 2, 4, ... 30, 30
    assert all(top / 2 <= gap <= top + 0.01 for gap, top in zip(gaps, tops, strict=True)), gaps
    assert len(db.failed) == 8 and "HTTP 503" in db.failed[0]
    assert db.rows == [] and box.last_error is None and box.status()["outbox"] == 0
