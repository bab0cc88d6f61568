"""HistoryRecorder: seq numbering, the payload allow-list and redaction, against a real daemon."""

from __future__ import annotations

from choo.client import open_daemon_client
from choo.orchestrator.events import Event, EventBus
from choo.orchestrator.recorder import HistoryRecorder, allowed_payload
from choo_daemon.daemon import Daemon
from protocol.events import BY_NAME, EVENT_TYPES
from protocol.home import Home
from protocol.times import utc_now
from tests.choo.support import History

RUN = "run_20260120_143052_a1b2"


def test_every_event_type_has_an_allow_list() -> None:
    assert all(BY_NAME[t].payload for t in EVENT_TYPES), "every event type keeps something"


def test_allowed_payload_drops_unknown_fields_and_redacts_what_it_keeps() -> None:
    event = Event(
        "task.claude.done",
        utc_now(),
        "u",
        1,
        {
            "provider": "command",
            "exit_code": 0,
            "output_tail": "ok AKIAIOSFODNN7EXAMPLE ok",
            "prompt": "the whole prompt",
            "env": {"HOME": "/root"},
        },
    )
    assert allowed_payload(event) == {
        "provider": "command",
        "exit_code": 0,
        "output_tail": "ok [REDACTED] ok",
    }
    assert allowed_payload(Event("no.such.type", utc_now(), payload={"a": 1})) == {}


async def test_events_are_numbered_filtered_and_redacted_on_their_way_to_the_store(
    home: Home, daemon: Daemon
) -> None:
    warnings: list[str] = []
    async with open_daemon_client(home) as client:
        await client.start_run(
            RUN, repo_path="/repo", started_at=utc_now(), parallelism=1, total_units=1
        )
        recorder = HistoryRecorder(client, RUN, warn=warnings.append)
        bus = EventBus()
        bus.subscribe(recorder.handle)
        bus.emit("unit.started", unit="u", tasks=1, pending=1, provider="command", cwd="/x")
        bus.emit(
            "task.claude.done",
            unit="u",
            task=1,
            provider="command",
            attempt=1,
            exit_code=1,
            duration_ms=12,
            timed_out=False,
            output_tail="said Authorization: Bearer abcdef123456789 and more",
            prompt="never stored",
        )
        bus.emit(
            "task.failed",
            unit="u",
            task=1,
            error="key AKIAIOSFODNN7EXAMPLE leaked",
            title="T",
            attempts=1,
            reason="r",
            duration_ms=3,
            environment={"TOKEN": "x"},
        )
        assert recorder.last_seq == 3
        await client.complete_run(RUN, status="failed", completed_at=utc_now())

    events = History(home).events(RUN)
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "unit.started"),
        (2, "task.claude.done"),
        (3, "task.failed"),
    ]
    assert events[0]["payload"] == {"tasks": 1, "pending": 1, "provider": "command"}
    assert events[1]["payload"] == {
        "provider": "command",
        "attempt": 1,
        "exit_code": 1,
        "duration_ms": 12,
        "timed_out": False,
        "output_tail": "said Authorization: Bearer [REDACTED] and more",
    }
    assert (events[1]["unit"], events[1]["task"]) == ("u", 1)
    assert set(events[2]["payload"]) == {"title", "attempts", "reason", "duration_ms"}
    assert events[2]["error"] == "key [REDACTED] leaked"
    assert warnings == []


async def test_a_resumed_run_numbers_on_after_the_resume_marker(home: Home, daemon: Daemon) -> None:
    async with open_daemon_client(home) as client:
        await client.start_run(
            RUN, repo_path="/repo", started_at=utc_now(), parallelism=1, total_units=1
        )
        first = HistoryRecorder(client, RUN, warn=print)
        bus = EventBus()
        bus.subscribe(first.handle)
        for _ in range(3):
            bus.emit("unit.queued", unit="u", level=0, tasks=1, depends_on=[])
        bus.emit("run.stopped", reason="SIGINT received", signal="SIGINT")
        await client.complete_run(RUN, status="stopped", completed_at=utc_now())

        marker = await client.append_resume_marker(RUN, time=utc_now(), reason="again")
        assert marker == 5
        second = HistoryRecorder(client, RUN, first_seq=marker + 1, warn=print)
        bus = EventBus()
        bus.subscribe(second.handle)
        bus.emit("unit.started", unit="u", tasks=1, pending=1, provider="command")
        bus.emit("orch.completed", completed=1, failed=0, blocked=0, duration_ms=1)
        await client.complete_run(RUN, status="completed", completed_at=utc_now())

    history = History(home)
    events = history.events(RUN)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert [e["type"] for e in events[3:]] == [
        "run.stopped",
        "run.resumed",
        "unit.started",
        "orch.completed",
    ]
    assert history.run(RUN)["status"] == "completed"


def test_a_failing_recorder_warns_once_and_stops_sending(home: Home) -> None:
    warnings: list[str] = []

    class Refusing:
        sent = 0

        def send_event(self, *args: object, **kwargs: object) -> None:
            self.sent += 1

    client = Refusing()
    recorder = HistoryRecorder(client, RUN, warn=warnings.append)  # type: ignore[arg-type]
    recorder.fail("the daemon went away")
    recorder.fail("and again")
    recorder.handle(Event("unit.queued", utc_now(), "u"))
    assert len(warnings) == 1
    assert "the daemon went away" in warnings[0]
    assert "the run goes on" in warnings[0]
    assert client.sent == 0
