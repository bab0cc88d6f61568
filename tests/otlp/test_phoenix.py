"""The examples plan, recorded with its fake agent, sent to a real Phoenix with
``choo history export --otlp`` and read back through Phoenix's REST API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from choo.api import HistoryAPI
from choo.history import iter_events
from protocol.home import Home
from protocol.otlp import OtlpError, map_run, send_run, trace_id
from tests.choo.support import choo_env, run_choo
from tests.otlp.conftest import Phoenix

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.phoenix
# A span's name's first word -> its parent's.
PARENT = {
    "unit": "choo",
    "invoke_agent": "unit",
    "execute_tool": "invoke_agent",
    "llm": "invoke_agent",
}
ENDS = ("task.retry", "task.completed", "task.failed")  # the events that end an attempt


def record_examples(root: Path, home: Home) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the examples plan (six units, the fake agent's tool calls and tokens)."""
    repo = root / "examples"
    shutil.copytree(EXAMPLES, repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    result = run_choo("run", "specs/tasks", cwd=repo, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    with HistoryAPI.connect(home) as api:
        (summary,) = api.list_runs()["runs"]
        run = api.get_run(summary["id"])
        return run, list(iter_events(api, run["id"]))


def export(run_id: str, *args: str, **env: str) -> dict[str, Any]:
    result = run_choo(
        "history", "export", run_id, *args, "--json", cwd=Path.cwd(), env=choo_env(**env)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sent: dict[str, Any] = orjson.loads(result.stdout)
    return sent


def test_a_recorded_run_reads_back_from_phoenix_once_however_often_it_is_sent(
    tmp_path: Path, daemon_process: Home, phoenix: Phoenix
) -> None:
    run, events = record_examples(tmp_path, daemon_process)
    expected = map_run(run, events)
    trace = f"{trace_id(run['id']):032x}"

    sent = export(run["id"], "--otlp", phoenix.url)
    assert sent == {
        "run_id": run["id"],
        "url": f"{phoenix.url}/v1/traces",
        "trace_id": trace,
        "events": len(events),
        "spans": len(expected),
    }
    spans = phoenix.wait_spans(trace, len(expected))

    # Span count and names.
    names = sorted(s["name"] for s in spans)
    assert names == sorted(s.name for s in expected)
    totals = run["totals"]
    kinds = [e["type"] for e in events]
    assert totals["attempts"] >= 7  # the plan's 9 tasks, one of them flaky
    assert names.count("invoke_agent command") == totals["attempts"]
    assert sum(n.startswith("execute_tool Write") for n in names) == totals["tool_calls"] > 0
    assert sum(n.startswith("unit ") for n in names) == run["total_units"] == 6
    assert names.count("execute_tool validation") == kinds.count("task.backpressure")
    assert sum(n.startswith("llm claude-") for n in names) == kinds.count("task.agent.result")
    assert {s["trace_id"] for s in spans} == {trace}

    # Parent-child structure: run -> units -> attempts -> tools and validations.
    by_id = {s["span_id"]: s for s in spans}
    (root,) = [s for s in spans if not s["parent_span_id"]]
    assert root["name"] == f"choo run {run['id']}"
    for span in spans:
        if span is root:
            continue
        parent = by_id[span["parent_span_id"]]["name"]
        kind = span["name"].split(" ")[0]
        assert parent.split(" ")[0] == PARENT[kind], (span["name"], parent)

    # Tokens and the GenAI attributes, as the daemon added them up.
    agents = [s["attrs"] for s in spans if s["name"].startswith("invoke_agent")]
    assert sum(a["gen_ai.usage.input_tokens"] for a in agents) == totals["input_tokens"]
    assert sum(a["gen_ai.usage.output_tokens"] for a in agents) == totals["output_tokens"]
    assert all(a["gen_ai.operation.name"] == "invoke_agent" for a in agents)
    assert all(a["gen_ai.conversation.id"] and a["choo.run_id"] == run["id"] for a in agents)
    assert {a["openinference.span.kind"] for a in agents} == {"AGENT"}
    stops = [e["payload"].get("stop_reason") or "passed" for e in events if e["type"] in ENDS]
    assert sorted(a["choo.stop_reason"] for a in agents) == sorted(stops)
    assert {"validation_failed", "passed_after_retry"} <= set(stops)
    assert root["attrs"]["choo.repo"] == run["repo_path"]
    llms = [s["attrs"] for s in spans if s["name"].startswith("llm ")]
    assert sum(a["llm.token_count.completion"] for a in llms) == totals["output_tokens"]
    assert {a["openinference.span.kind"] for a in llms} == {"LLM"}

    # Sent again (the endpoint from the standard variable this time): no duplicates.
    again = export(run["id"], "--otlp", "env", OTEL_EXPORTER_OTLP_ENDPOINT=phoenix.url)
    assert again["spans"] == len(expected)
    # Phoenix stores what it receives in order: once a later trace is there, the
    # second export has been stored (or dropped as a duplicate) too.
    marker = {**run, "id": run["id"] + "-marker"}
    send_run(marker, [], endpoint=phoenix.url, headers={})
    assert len(phoenix.wait_spans(f"{trace_id(marker['id']):032x}", 1)) == 1
    assert sorted(s["span_id"] for s in phoenix.spans(trace)) == sorted(by_id)


def test_phoenix_stopped_refuses_and_started_again_keeps_its_spans(phoenix: Phoenix) -> None:
    """The fixture's stop and start, as a test of an exporter facing an absent
    backend uses them: same port, same database."""
    run = {
        "id": "run_20260101_000000_stop",
        "repo_path": "/r",
        "status": "completed",
        "started_at": "2026-01-01T00:00:00.000Z",
        "completed_at": "2026-01-01T00:00:01.000Z",
    }
    trace = f"{trace_id(run['id']):032x}"
    assert send_run(run, [], endpoint=phoenix.url, headers={}) == 1
    assert len(phoenix.wait_spans(trace, 1)) == 1
    port = phoenix.port
    phoenix.stop()
    try:
        with pytest.raises(OtlpError, match="connection refused"):
            send_run(run, [], endpoint=phoenix.url, headers={}, timeout=2)
    finally:
        phoenix.start()
    assert phoenix.port == port
    assert [s["name"] for s in phoenix.spans(trace)] == [f"choo run {run['id']}"]
