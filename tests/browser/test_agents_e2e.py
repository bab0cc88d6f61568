"""A whole plan run by the installed ``choo run`` against the browser tests'
daemon, with a fake ``claude`` and a fake ``codex`` on PATH that replay the
transcripts of ``tests/fixtures/agent-streams``; its history checked end to
end: the API, ``choo history`` and the UI in Chromium.

Unit ``settings`` names claude in its plan: task 1 replays
``claude-basic.jsonl`` (Write, a failing Bash, Grep), task 2
``claude-subagent.jsonl`` (a Task whose subagent calls Glob). Unit ``lookup``
runs on the run's provider, codex with ``provider.model: gpt-5-codex``
(codex names no model in its stream), and replays ``codex-basic.jsonl``;
its cost is estimated from the price table. Every expected tool, token count
and cost is read from the transcripts themselves.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from protocol.prices import DEFAULT_PRICES
from tests.browser.agents import api
from tests.browser.support import Site
from tests.browser.test_usage import tokens, usd
from tests.choo.support import make_repo, plan_md, run_choo, task_md

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "agent-streams"
BIN = STREAMS / "bin"
CODEX_MODEL = "gpt-5-codex"

# Where each Claude Code tool of the transcripts keeps its target.
CLAUDE_TARGET = {
    "Write": "file_path",
    "Bash": "command",
    "Grep": "pattern",
    "Glob": "pattern",
    "Task": "description",
}


@dataclass
class Expected:
    """What one transcript says its attempt did and cost."""

    tools: list[tuple[str, str, str]]  # (tool, target, outcome as the UI shows it), in end order
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    cost_estimated: bool


def lines(name: str) -> list[dict[str, Any]]:
    text = (STREAMS / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def from_claude(name: str) -> Expected:
    started: dict[str, tuple[str, str]] = {}
    tools: list[tuple[str, str, str]] = []
    result: dict[str, Any] = {}
    for event in lines(name):
        content = event.get("message", {}).get("content", [])
        if event["type"] == "assistant":
            for block in content:
                if block["type"] == "tool_use":
                    target = block["input"][CLAUDE_TARGET[block["name"]]]
                    started[block["id"]] = (block["name"], target)
        elif event["type"] == "user":
            for block in content:
                if block["type"] == "tool_result":
                    tool, target = started.pop(block["tool_use_id"])
                    tools.append((tool, target, "✗ error" if block.get("is_error") else "✓"))
        elif event["type"] == "result":
            result = event
    assert not started and result, name
    models = result["modelUsage"].values()  # every model's tokens, subagents' too
    return Expected(
        tools,
        sum(m["inputTokens"] for m in models),
        sum(m["outputTokens"] for m in models),
        sum(m["cacheReadInputTokens"] for m in models),
        sum(m["cacheCreationInputTokens"] for m in models),
        result["total_cost_usd"],
        False,
    )


def from_codex(name: str, model: str) -> Expected:
    tools: list[tuple[str, str, str]] = []
    usage: dict[str, int] = {}
    for event in lines(name):
        item = event.get("item", {})
        if event["type"] == "item.completed" and item["type"] == "command_execution":
            code = item["exit_code"]
            tools.append(("shell", item["command"], "✓" if code == 0 else f"✗ exit {code}"))
        elif event["type"] == "item.completed" and item["type"] == "file_change":
            (change,) = item["changes"]
            tools.append(("file_change", f"{change['kind']} {change['path']}", "✓"))
        elif event["type"] == "item.completed" and item["type"] == "mcp_tool_call":
            arguments = json.dumps(item["arguments"], separators=(",", ":"))
            tools.append((f"mcp:{item['server']}.{item['tool']}", arguments, "✓"))
        elif event["type"] == "item.completed" and item["type"] == "web_search":
            tools.append(("web_search", item["query"], "✓"))
        elif event["type"] == "turn.completed":
            usage = event["usage"]
    cached = usage["cached_input_tokens"]
    fresh = usage["input_tokens"] - cached  # codex's input includes the cached tokens
    price = DEFAULT_PRICES[model]
    cost = (
        fresh * price["input"]
        + cached * price["cache_read"]
        + usage["output_tokens"] * price["output"]
    ) / 1e6
    return Expected(tools, fresh, usage["output_tokens"], cached, 0, cost, True)


# (unit, task) -> (title, transcript)
TASKS = {
    ("settings", 1): ("Settings module", "claude-basic.jsonl"),
    ("settings", 2): ("Find config loaders", "claude-subagent.jsonl"),
    ("lookup", 1): ("Search the issues", "codex-basic.jsonl"),
}


def expected(unit: str, task: int) -> Expected:
    name = TASKS[(unit, task)][1]
    return from_codex(name, CODEX_MODEL) if name.startswith("codex") else from_claude(name)


def body(unit: str, task: int) -> str:
    name = TASKS[(unit, task)][1]
    return f"Create `{unit}_{task}.py`: what the task makes\n\n[transcript: {name}]"


def total(key: str, keys: list[tuple[str, int]] | None = None) -> Any:
    return sum(getattr(expected(*k), key) for k in (keys or list(TASKS)))


def test_a_plan_run_by_fake_claude_and_codex_reads_the_same_in_api_cli_and_ui(
    page: Page, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {
        "settings/IMPLEMENTATION_PLAN.md": plan_md(provider="claude"),
        "lookup/IMPLEMENTATION_PLAN.md": plan_md(),
    }
    for (unit, task), (title, _) in TASKS.items():
        files[f"{unit}/0{task}-task.md"] = task_md(
            task,
            title,
            body(unit, task),
            depends_on=[task - 1] if task > 1 else None,
            backpressure=f"python3 -m py_compile {unit}_{task}.py",
        )
    repo = make_repo(
        tmp_path / "repo", files, config={"provider": {"name": "codex", "model": CODEX_MODEL}}
    )
    root = str(repo.root.resolve())
    env = {**site.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = run_choo("run", "specs/tasks", cwd=repo.root, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    # --- the API ------------------------------------------------------------------
    (listed,) = api(site, "/api/history/runs", repo=root)["runs"]
    run_id = listed["id"]
    run = api(site, f"/api/history/runs/{run_id}")
    assert (run["status"], run["completed_units"], run["failed_units"]) == ("completed", 2, 0)
    t = run["totals"]
    assert t["attempts"] == len(TASKS)
    assert t["tool_calls"] == sum(len(expected(*k).tools) for k in TASKS)
    for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        assert t[key] == total(key), key
    assert t["cost_usd"] == pytest.approx(total("cost_usd"))
    assert t["cost_estimated"] is True  # codex's part is priced by choo
    assert listed["cost_usd"] == pytest.approx(t["cost_usd"])
    assert listed["cost_estimated"] is True

    units = {u["unit"]: u for u in api(site, f"/api/history/runs/{run_id}/units")["units"]}
    assert set(units) == {"settings", "lookup"}
    for name, u in units.items():
        mine = [k for k in TASKS if k[0] == name]
        assert (u["status"], u["attempts"]) == ("completed", len(mine))
        assert u["tool_calls"] == sum(len(expected(*k).tools) for k in mine)
        assert u["cost_usd"] == pytest.approx(total("cost_usd", mine))
        assert u["cost_estimated"] is (name == "lookup")

    for unit, task in TASKS:
        want = expected(unit, task)
        data = api(site, f"/api/history/runs/{run_id}/tasks", unit=unit, task=task)
        (got,) = data["tasks"]
        assert got["title"] == TASKS[(unit, task)][0]
        (a,) = got["attempts"]
        assert a["stop_reason"] == "passed"
        assert [(c["tool"], c["target"]) for c in a["tools"]] == [w[:2] for w in want.tools]
        assert a["tool_calls"] == len(want.tools)
        assert (a["input_tokens"], a["output_tokens"]) == (want.input_tokens, want.output_tokens)
        assert (a["cache_read_tokens"], a["cache_write_tokens"]) == (
            want.cache_read_tokens,
            want.cache_write_tokens,
        )
        assert a["cost_usd"] == pytest.approx(want.cost_usd)
        assert a["cost_estimated"] is want.cost_estimated
        assert a["model"] == (CODEX_MODEL if unit == "lookup" else "claude-sonnet-4-5-20250929")

    # --- the CLI ------------------------------------------------------------------
    shown = json.loads(site.choo("history", "show", run_id, "--json"))
    assert shown["run"]["totals"] == t
    assert {u["unit"]: u["cost_usd"] for u in shown["units"]} == {
        n: u["cost_usd"] for n, u in units.items()
    }
    monkeypatch.setenv("COLUMNS", "160")  # the tables as on a wide terminal, not cut to 80
    human = site.choo("history", "show", run_id)
    cli_cost = f"~${t['cost_usd']:,.2f}"  # choo's terminal format: two decimals from a cent
    assert re.search(rf"cost\s+{re.escape(cli_cost)} \(estimated\)", human), human
    assert re.search(rf"tool calls\s+{t['tool_calls']}\b", human), human

    table = json.loads(site.choo("history", "tasks", "--repo", root, "--json"))
    assert {(x["unit"], x["task"], x["title"]) for x in table["tasks"]} == {
        (u, n, title) for (u, n), (title, _) in TASKS.items()
    }
    assert all(x["runs"] == 1 and x["first_try_pass_rate"] == 1 for x in table["tasks"])
    human_tasks = site.choo("history", "tasks", "--repo", root)
    for title, _ in TASKS.values():
        assert title in human_tasks, human_tasks

    # --- the UI -------------------------------------------------------------------
    page.goto(f"/#/history?run={run_id}")
    expect(page.locator(".stat[data-stat='cost'] .stat-value")).to_have_text(
        usd(t["cost_usd"], True)
    )
    expect(page.locator(".stat[data-stat='tokens'] .stat-value")).to_have_text(
        f"{tokens(t['input_tokens'])} / {tokens(t['output_tokens'])}"
    )
    expect(page.locator(".stat[data-stat='tools'] .stat-value")).to_have_text(
        f"{t['tool_calls']} / {t['attempts']}"
    )
    for name, u in units.items():
        expect(page.locator(f"g.node[data-unit='{name}'] .node-cost")).to_have_text(
            f"{usd(u['cost_usd'], u['cost_estimated'])} · {u['attempts']} att"
        )

    # The run's tasks, then each task's attempt with the transcript's tool calls.
    page.locator(".tl-card .pane-link").click()
    expect(page).to_have_url(re.compile(r"pane=tasks"))
    rows = page.locator("tr[data-task]")
    expect(rows).to_have_count(len(TASKS))
    for unit, task in TASKS:
        want = expected(unit, task)
        page.locator(f"tr[data-task='{unit}:{task}'] a").click()
        dialog = page.locator("dialog.task-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator(".task-dialog-head")).to_contain_text(
            f"{unit} · task {task} — {TASKS[(unit, task)][0]}"
        )
        col = dialog.locator("section.attempt")
        expect(col).to_have_count(1)
        expect(col.locator("dd[data-field='cost']")).to_have_text(
            usd(want.cost_usd, want.cost_estimated)
        )
        calls = col.locator("li.tool")
        expect(calls.locator(".tool-name")).to_have_text([w[0] for w in want.tools])
        expect(calls.locator(".tool-target")).to_have_text([w[1] for w in want.tools])
        expect(calls.locator(".tool-outcome")).to_have_text([w[2] for w in want.tools])
        expect(col.locator(".validation-command")).to_have_text(
            f"python3 -m py_compile {unit}_{task}.py"
        )
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

    # The History list of the repository: its cost column.
    page.goto(f"/#/history?repo={quote(root, safe='')}")
    expect(page.locator(f"tr[data-run='{run_id}'] td.cost")).to_have_text(usd(t["cost_usd"], True))

    # The Tasks tab: the repository's tasks across its (one) run.
    page.locator("a.tasks-link").click()
    expect(page.locator("#tab-tasks")).to_have_attribute("aria-current", "true")
    rows = page.locator("tr[data-task]")
    expect(rows).to_have_count(len(TASKS))
    for x in table["tasks"]:
        row = page.locator(f"tr[data-task='{x['unit']}:{x['task']}']")
        expect(row.locator("td.title")).to_have_text(x["title"])
        expect(row.locator("td.runs")).to_have_text("1")
        expect(row.locator("td.pass-rate")).to_have_text("100%")
        expect(row.locator("td.cost")).to_have_text(usd(x["median_cost_usd"], x["cost_estimated"]))
        expect(row.locator(f"a.outcome[data-run='{run_id}']")).to_have_attribute(
            "data-stop", "passed"
        )
