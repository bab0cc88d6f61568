"""A whole plan run by the installed ``choo`` with a fake ``claude`` and a
fake ``codex`` on PATH (``tests/fixtures/agent-streams/bin``), checked
through the daemon's HTTP API: each attempt's tool calls
(``task.agent.tool``), its result (``task.agent.result``) and why it ended
(``stop_reason``, ``flaky``).

Unit ``alpha`` runs on the run's provider (claude); its first attempt ends
with an API error reported in the stream (``is_error`` with exit code 0).
Unit ``beta`` names codex in its plan; its first validation fails.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from choo.api import HistoryAPI
from protocol.home import Home
from tests.choo.support import make_repo, plan_md, run_choo, task_md

BIN = Path(__file__).resolve().parents[1] / "fixtures" / "agent-streams" / "bin"


def all_events(api: HistoryAPI, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(f"/api/history/runs/{run_id}/events", type="task.", after=after, limit=1000)
        events += page["events"]
        if page["next_after"] is None:
            return events
        after = page["next_after"]


def test_a_plan_with_claude_and_codex_records_tools_results_and_stop_reasons(
    tmp_path: Path, daemon_process: Home
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "alpha/IMPLEMENTATION_PLAN.md": plan_md(),
            "alpha/01-api.md": task_md(1, "Survives an API error", "FAKE:api-error"),
            "beta/IMPLEMENTATION_PLAN.md": plan_md(provider="codex"),
            "beta/01-check.md": task_md(
                1, "Checked", "FAKE:write-second=beta.txt", backpressure="test -f beta.txt"
            ),
        },
        config={"provider": {"name": "claude"}},
    )
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AGENT_TOOLS": "3",
    }
    result = run_choo("run", "specs/tasks", cwd=repo.root, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    with HistoryAPI.connect(daemon_process) as api:
        (run,) = api.list_runs()["runs"]
        events = all_events(api, run["id"])

    tools: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == "task.agent.tool":
            tools[(e["unit"], e["payload"]["attempt"])].append(e["payload"])
    assert {k: len(v) for k, v in tools.items()} == {
        ("alpha", 1): 3,
        ("alpha", 2): 3,
        ("beta", 1): 3,
        ("beta", 2): 3,
    }
    assert tools[("alpha", 1)][0]["tool"] == "Bash"
    assert tools[("alpha", 1)][0]["target"] == "echo step 0"
    assert tools[("beta", 2)][2]["exit_code"] == 0

    results = {
        (e["unit"], e["payload"]["attempt"]): e["payload"]
        for e in events
        if e["type"] == "task.agent.result"
    }
    assert set(results) == set(tools)
    for (unit, _), r in results.items():
        assert r["provider"] == ("claude" if unit == "alpha" else "codex")
        assert r["session_id"] and r["tool_calls"] == 3 and r["unparsed_lines"] == 0
        assert r["input_tokens"] and r["output_tokens"]
    assert results[("alpha", 1)]["is_error"] is True
    # Claude reports its cost; the codex stream names no model and none is
    # configured, so its cost is unknown (None), not 0.
    assert results[("alpha", 2)]["cost_usd"] > 0
    assert results[("alpha", 2)]["cost_estimated"] is False
    assert results[("beta", 2)]["cost_usd"] is None

    dones = [e for e in events if e["type"] == "task.claude.done"]
    assert dones and all('{"type"' not in e["payload"]["output_tail"] for e in dones)

    def only(type: str, unit: str) -> dict[str, Any]:
        (event,) = [e for e in events if e["type"] == type and e["unit"] == unit]
        return dict(event["payload"])

    assert only("task.retry", "alpha")["stop_reason"] == "agent_failed"
    assert only("task.retry", "beta")["stop_reason"] == "validation_failed"
    alpha, beta = only("task.completed", "alpha"), only("task.completed", "beta")
    assert (alpha["stop_reason"], alpha["flaky"]) == ("passed_after_retry", False)
    assert (beta["stop_reason"], beta["flaky"]) == ("passed_after_retry", True)
