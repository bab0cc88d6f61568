"""protocol.otlp: a run's events mapped to spans (structure, IDs, attributes),
the SDK's spans built from them, and the errors of sending to nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest

from protocol.otlp import (
    OtlpError,
    Span,
    map_run,
    readable_spans,
    send_run,
    span_id,
    time_ns,
    trace_id,
    traces_url,
)

RUN_ID = "run_20260101_120000_abcd"


def ev(seq: int, type: str, unit: str | None = None, task: int | None = None, **payload: Any):
    return {
        "seq": seq,
        "time": f"2026-01-01T12:00:{seq:02d}.000Z",
        "type": type,
        "unit": unit,
        "task": task,
        "pr": None,
        "payload": payload or None,
        "error": None,
    }


RUN: dict[str, Any] = {
    "id": RUN_ID,
    "repo_path": "/src/repo",
    "status": "completed",
    "started_at": "2026-01-01T12:00:00.000Z",
    "completed_at": "2026-01-01T12:01:00.000Z",
    "resume_count": 1,
    "dry_run": False,
    "total_units": 1,
    "cost_usd": 0.5,
    "cost_estimated": True,
}
EVENTS = [
    ev(1, "orch.started", units=1),
    ev(2, "unit.queued", "api", level=0),
    ev(3, "unit.started", "api", tasks=1),
    ev(4, "task.started", "api", 1, title="Routes"),
    ev(5, "task.claude.invoke", "api", 1, attempt=1, provider="claude"),
    ev(6, "task.agent.tool", "api", 1, attempt=1, tool="Bash", target="ls", exit_code=0),
    ev(7, "task.agent.tool", "api", 1, attempt=1, tool="Edit", target="a.py", is_error=True),
    ev(
        8,
        "task.agent.result",
        "api",
        1,
        attempt=1,
        session_id="s-1",
        model="claude-sonnet-4-5",
        input_tokens=10,
        output_tokens=20,
        cache_read_tokens=300,
        cost_usd=0.2,
        cost_estimated=True,
    ),
    ev(9, "task.claude.done", "api", 1, attempt=1, exit_code=0, duration_ms=4000),
    ev(10, "task.backpressure", "api", 1, attempt=1, command="pytest"),
    ev(11, "task.validation.fail", "api", 1, command="pytest", exit_code=1, duration_ms=900),
    ev(12, "task.retry", "api", 1, attempt=1, stop_reason="validation_failed"),
    ev(13, "run.stopped", reason="SIGINT", signal="SIGINT"),
    ev(14, "run.resumed", reason="resume"),
    ev(15, "task.claude.invoke", "api", 1, attempt=1, provider="claude"),
    ev(16, "task.agent.result", "api", 1, attempt=1, session_id="s-2", input_tokens=5),
    ev(17, "task.backpressure", "api", 1, attempt=1, command="pytest"),
    ev(18, "task.validation.ok", "api", 1, command="pytest", exit_code=0, duration_ms=800),
    ev(19, "task.completed", "api", 1, title="Routes", stop_reason="passed_after_retry"),
    ev(20, "unit.completed", "api", tasks=1),
]


def by_name(spans: list[Span]) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for s in spans:
        found.setdefault(s.name, []).append(s)
    return found


def test_the_run_is_the_root_its_units_children_attempts_and_tools_below() -> None:
    spans = map_run(RUN, EVENTS)
    names = by_name(spans)
    (root,) = names[f"choo run {RUN_ID}"]
    (unit,) = names["unit api"]
    attempts = names["invoke_agent claude"]
    validations = names["execute_tool validation"]
    assert spans[0] is root and root.parent_id is None
    assert unit.parent_id == root.span_id
    assert len(attempts) == 2 and {a.parent_id for a in attempts} == {unit.span_id}
    tools = names["execute_tool Bash"] + names["execute_tool Edit"]
    assert {t.parent_id for t in tools} == {attempts[0].span_id}
    assert [v.parent_id for v in validations] == [a.span_id for a in attempts]
    assert [s.parent_id for s in names["llm claude-sonnet-4-5"] + names["llm"]] == [
        a.span_id for a in attempts
    ]
    # No span for orch.*, task.started, markers.
    assert len(spans) == 1 + 1 + 2 + 2 + 2 + 2


def test_ids_come_from_the_run_id_and_the_seq_that_starts_each_span() -> None:
    spans = map_run(RUN, EVENTS)
    starts = {s.name: s.span_id for s in spans}
    assert starts[f"choo run {RUN_ID}"] == span_id(RUN_ID, 0)
    assert starts["unit api"] == span_id(RUN_ID, 2)  # its first event, unit.queued
    assert starts["execute_tool Bash"] == span_id(RUN_ID, 6)
    assert [s.span_id for s in spans if s.name == "invoke_agent claude"] == [
        span_id(RUN_ID, 5),
        span_id(RUN_ID, 15),
    ]
    assert [s.span_id for s in map_run(RUN, list(reversed(EVENTS)))] == [s.span_id for s in spans]
    assert len({s.span_id for s in spans}) == len(spans)
    assert trace_id(RUN_ID) == trace_id(RUN_ID) != trace_id(RUN_ID + "x")
    assert 0 < trace_id(RUN_ID) < 2**128 and 0 < span_id(RUN_ID, 0) < 2**64


def test_attributes_use_the_genai_names_and_choo_for_the_rest() -> None:
    names = by_name(map_run(RUN, EVENTS))
    first, second = names["invoke_agent claude"]
    assert first.attributes == {
        "choo.run_id": RUN_ID,
        "openinference.span.kind": "AGENT",
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "claude",
        "choo.unit": "api",
        "choo.task": 1,
        "choo.task.title": "Routes",
        "choo.attempt": 1,
        "choo.provider": "claude",
        "gen_ai.conversation.id": "s-1",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 20,
        "choo.usage.cache_read_tokens": 300,
        "choo.cost_usd": 0.2,
        "choo.cost_estimated": True,
        "choo.agent.exit_code": 0,
        "session.id": "s-1",
        "choo.stop_reason": "validation_failed",
    }
    (llm,) = names["llm claude-sonnet-4-5"]
    assert llm.parent_id == first.span_id and llm.span_id == span_id(RUN_ID, 8, "llm")
    assert (llm.start_ns, llm.end_ns) == (first.start_ns, time_ns(EVENTS[7]["time"]))
    assert llm.attributes == {
        "choo.run_id": RUN_ID,
        "openinference.span.kind": "LLM",
        "llm.model_name": "claude-sonnet-4-5",
        "llm.token_count.prompt": 310,  # with the cached tokens, as OpenInference counts
        "llm.token_count.prompt_details.cache_read": 300,
        "llm.token_count.prompt_details.cache_write": 0,
        "llm.token_count.completion": 20,
        "llm.token_count.total": 330,
        "choo.unit": "api",
        "choo.task": 1,
        "choo.attempt": 1,
    }
    assert first.error == "validation_failed"
    assert second.attributes["choo.stop_reason"] == "passed_after_retry" and second.error is None
    bash = names["execute_tool Bash"][0]
    assert bash.attributes["gen_ai.tool.name"] == "Bash"
    assert bash.attributes["openinference.span.kind"] == "TOOL"
    assert bash.attributes["choo.tool.target"] == "ls" and bash.error is None
    assert names["execute_tool Edit"][0].error == "Edit failed"
    failed = names["execute_tool validation"][0]
    assert failed.attributes["choo.validation.command"] == "pytest"
    assert failed.attributes["choo.validation.exit_code"] == 1
    assert failed.error is not None
    root = map_run(RUN, EVENTS)[0]
    assert root.attributes["choo.repo"] == "/src/repo"
    assert root.attributes["choo.cost_estimated"] is True
    assert root.attributes["openinference.span.kind"] == "CHAIN"
    unit = names["unit api"][0]
    assert unit.attributes["choo.unit.status"] == "completed"


def test_stop_and_resume_are_events_of_the_root_span() -> None:
    root = map_run(RUN, EVENTS)[0]
    assert [(e.name, e.time_ns, e.attributes.get("choo.reason")) for e in root.events] == [
        ("run.stopped", time_ns("2026-01-01T12:00:13.000Z"), "SIGINT"),
        ("run.resumed", time_ns("2026-01-01T12:00:14.000Z"), "resume"),
    ]


def test_times_come_from_the_events_and_parents_cover_their_children() -> None:
    spans = map_run(RUN, EVENTS)
    names = by_name(spans)
    root, unit = names[f"choo run {RUN_ID}"][0], names["unit api"][0]
    first = names["invoke_agent claude"][0]
    assert (root.start_ns, root.end_ns) == (
        time_ns(RUN["started_at"]),
        time_ns(RUN["completed_at"]),
    )
    assert (first.start_ns, first.end_ns) == (
        time_ns(EVENTS[4]["time"]),
        time_ns(EVENTS[11]["time"]),
    )
    # A tool call is recorded when its outcome is known: it spans from the event before.
    edit = names["execute_tool Edit"][0]
    assert (edit.start_ns, edit.end_ns) == (time_ns(EVENTS[5]["time"]), time_ns(EVENTS[6]["time"]))
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        if s.parent_id is not None:
            parent = by_id[s.parent_id]
            assert parent.start_ns <= s.start_ns <= s.end_ns <= parent.end_ns
    assert unit.end_ns == time_ns(EVENTS[-1]["time"])


def test_a_running_run_ends_at_its_last_event_and_a_failed_one_is_an_error() -> None:
    running = {**RUN, "status": "running", "completed_at": None}
    root = map_run(running, EVENTS[:8])[0]
    assert root.end_ns == time_ns(EVENTS[7]["time"]) and root.error is None
    failed = {**RUN, "status": "failed", "error": "unit api failed"}
    assert map_run(failed, EVENTS)[0].error == "unit api failed"


def test_an_attempt_whose_invoke_is_missing_starts_at_its_first_event() -> None:
    events = [ev(3, "unit.started", "u"), ev(4, "task.agent.tool", "u", 2, attempt=1, tool="Read")]
    spans = map_run(RUN, events)
    assert [s.name for s in spans] == [
        f"choo run {RUN_ID}",
        "unit u",
        "invoke_agent",
        "execute_tool Read",
    ]
    assert spans[2].span_id == span_id(RUN_ID, 4, "attempt")
    assert spans[3].span_id == span_id(RUN_ID, 4) != spans[2].span_id
    # A validation's end without its start: the span takes its duration before it.
    events.append(ev(9, "task.validation.ok", "u", 2, command="make", duration_ms=2000))
    (check,) = [s for s in map_run(RUN, events) if s.name == "execute_tool validation"]
    assert check.span_id == span_id(RUN_ID, 9, "validation")
    assert check.end_ns - check.start_ns == 2_000_000_000


def test_readable_spans_carry_the_ids_parents_and_resource() -> None:
    spans = map_run(RUN, EVENTS)
    readable = readable_spans(RUN, spans)
    assert [r.context.span_id for r in readable] == [s.span_id for s in spans]
    assert {r.context.trace_id for r in readable} == {trace_id(RUN_ID)}
    assert readable[0].parent is None
    assert readable[1].parent is not None and readable[1].parent.span_id == spans[0].span_id
    assert readable[0].resource.attributes["service.name"] == "choo"
    assert readable[0].resource.attributes["choo.run_id"] == RUN_ID
    assert [e.name for e in readable[0].events] == ["run.stopped", "run.resumed"]


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://h:6006", "http://h:6006/v1/traces"),
        ("http://h:6006/", "http://h:6006/v1/traces"),
        ("http://h:4318/v1/traces", "http://h:4318/v1/traces"),
        ("https://h/otel", "https://h/otel/v1/traces"),
    ],
)
def test_a_base_url_gets_the_traces_path(given: str, url: str) -> None:
    assert traces_url(given) == url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sending_to_a_closed_port_names_the_endpoint_and_the_refusal() -> None:
    port = closed_port()
    with pytest.raises(OtlpError) as caught:
        send_run(RUN, EVENTS, endpoint=f"http://127.0.0.1:{port}", headers={}, timeout=2)
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/v1/traces" in message
    assert "connection refused" in message and RUN_ID in message


def test_an_endpoint_that_is_not_http_is_refused_before_sending() -> None:
    with pytest.raises(OtlpError, match="'localhost:4318' is not an http"):
        send_run(RUN, EVENTS, endpoint="localhost:4318", headers={})


def test_importing_protocol_otlp_loads_no_opentelemetry() -> None:
    code = (
        "import sys, protocol.otlp; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_refusing_backend_is_named_with_its_http_status() -> None:
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(401, "Unauthorized")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/traces"
        with pytest.raises(OtlpError, match=f"to {url}: HTTP 401 Unauthorized"):
            send_run(RUN, EVENTS, endpoint=url, headers={"authorization": "x"}, timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_a_large_run_goes_in_several_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    import protocol.otlp

    bodies: list[int] = []

    class Take(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(len(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    monkeypatch.setattr(protocol.otlp, "BATCH", 3)
    server = http.server.HTTPServer(("127.0.0.1", 0), Take)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert send_run(RUN, EVENTS, endpoint=url, headers={}) == len(map_run(RUN, EVENTS)) == 10
    finally:
        server.shutdown()
        server.server_close()
    assert len(bodies) == 4 and all(bodies)


def test_the_service_is_choo_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=core,choo.run_id=other")
    (root,) = readable_spans(RUN, map_run(RUN, [])[:1])
    assert root.resource.attributes["service.name"] == "choo"
    assert root.resource.attributes["team"] == "core"
    assert root.resource.attributes["choo.run_id"] == RUN_ID  # ours win
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agents")
    (root,) = readable_spans(RUN, map_run(RUN, [])[:1])
    assert root.resource.attributes["service.name"] == "agents"
