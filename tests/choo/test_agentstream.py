"""The stream parsers against transcripts shaped like the CLIs' real output
(tests/fixtures/agent-streams, sources in its README), one test per known
trap of the formats, and random lines that must never raise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choo.orchestrator.agentstream import (
    TARGET_CHARS,
    AgentResult,
    ClaudeStreamParser,
    CodexJsonParser,
    TextParser,
    ToolCall,
    make_parser,
)
from protocol.prices import estimate_cost

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "agent-streams"


def replay(
    name: str, fmt: str | None = None, model: str | None = None
) -> tuple[list[ToolCall], list[ToolCall], AgentResult, str]:
    """Feed a fixture line by line: (calls completed, calls left open, result, tail)."""
    fmt = fmt or ("claude-stream" if name.startswith("claude") else "codex-json")
    parser = make_parser(fmt, model=model)
    done: list[ToolCall] = []
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        done += parser.feed(line)
    left, result = parser.finish()
    return done, left, result, parser.text_tail(2000)


def lines(*events: dict[str, object]) -> list[str]:
    return [json.dumps(e) for e in events]


# --- Claude -----------------------------------------------------------------


def test_claude_run_gives_calls_with_targets_and_outcomes_and_the_result() -> None:
    done, left, r, tail = replay("claude-basic.jsonl")
    assert [(c.tool, c.target, c.is_error) for c in done] == [
        ("Write", "/work/repo/src/settings.py", False),
        ("Bash", "python -m pytest -q tests/test_settings.py", True),
        ("Grep", "READY", False),
    ]
    assert done[0].call_id == "toolu_01W"
    assert left == []
    assert r.session_id == "9f2c1e52-3d6b-4c1a-8a57-0c4a5e1b7d21"
    assert r.model == "claude-sonnet-4-5-20250929"
    assert (r.status, r.is_error, r.max_turns) == ("success", False, False)
    assert (r.turns, r.duration_ms, r.api_duration_ms) == (4, 21437, 19880)
    assert (r.input_tokens, r.output_tokens) == (18, 585)
    assert (r.cache_read_tokens, r.cache_write_tokens) == (67090, 7070)
    assert (r.cost_usd, r.cost_estimated) == (0.0512346, False)
    assert (r.tool_calls, r.unparsed_lines) == (3, 0)
    # The tail is what the agent said, not JSON.
    assert tail.endswith("Created src/settings.py; the test needs the package on the path.")
    assert "{" not in tail and tail.count("the test needs") == 1


def test_claude_message_id_repeated_over_lines_counts_its_usage_once() -> None:
    usage = {"input_tokens": 4, "output_tokens": 300, "cache_read_input_tokens": 1000}
    parser = ClaudeStreamParser(model="claude-sonnet-4-5")
    for block in ({"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Hi"}):
        message = {"id": "msg_1", "content": [block], "usage": usage}
        parser.feed(json.dumps({"type": "assistant", "message": message}))
    later = {"id": "msg_2", "content": [{"type": "text", "text": "Bye"}], "usage": usage}
    parser.feed(json.dumps({"type": "assistant", "message": later}))
    _, r = parser.finish()  # cut short: no result line, usage from the messages
    assert (r.input_tokens, r.output_tokens, r.cache_read_tokens) == (8, 600, 2000)
    assert r.turns == 2
    assert r.cost_estimated is True  # no cost in the stream: priced from the table
    assert r.cost_usd == estimate_cost(
        "claude-sonnet-4-5", input_tokens=8, output_tokens=600, cache_read_tokens=2000
    )


def test_claude_message_id_with_growing_output_keeps_the_largest() -> None:
    parser = ClaudeStreamParser()
    for out in (1, 1, 260):
        message = {"id": "m", "content": [], "usage": {"input_tokens": 2, "output_tokens": out}}
        parser.feed(json.dumps({"type": "assistant", "message": message}))
    _, r = parser.finish()
    assert (r.input_tokens, r.output_tokens) == (2, 260)


def test_claude_subagent_tokens_come_from_model_usage_not_result_usage() -> None:
    done, _, r, _ = replay("claude-subagent.jsonl")
    # result.usage says 10 in / 457 out (the main loop only); modelUsage adds the haiku subagent.
    assert (r.input_tokens, r.output_tokens) == (30, 547)
    assert (r.cache_read_tokens, r.cache_write_tokens) == (32800, 9840)
    assert (r.cost_usd, r.cost_estimated) == (0.0431, False)  # total_cost_usd includes the subagent
    assert [c.tool for c in done] == ["Glob", "Task"]
    assert done[1].target == "Find config loaders"


def test_claude_old_cost_usd_is_read() -> None:
    _, _, r, _ = replay("claude-old-cost.jsonl")
    assert (r.cost_usd, r.cost_estimated) == (0.00288, False)
    assert r.model == "claude-sonnet-4-20250514"


def test_claude_success_with_is_error_true_is_an_error_with_its_reasons() -> None:
    _, _, r, tail = replay("claude-api-error.jsonl")
    assert (r.status, r.is_error, r.max_turns) == ("success", True, False)
    assert "API error status 529" in r.errors
    assert "terminal reason: api_error" in r.errors
    assert "overloaded_error" in tail


def test_claude_error_max_turns_with_is_error_false_is_an_error_at_the_limit() -> None:
    done, _, r, _ = replay("claude-max-turns.jsonl")
    assert (r.status, r.is_error, r.max_turns) == ("error_max_turns", True, True)
    assert r.turns == 3
    assert [(c.tool, c.target) for c in done] == [
        ("Read", "/work/repo/README.md"),
        ("Edit", "/work/repo/README.md"),
    ]


def test_claude_terminal_reason_max_turns_sets_the_flag() -> None:
    parser = ClaudeStreamParser()
    result = {"type": "result", "subtype": "error_during_execution", "terminal_reason": "max_turns"}
    parser.feed(json.dumps(result))
    assert parser.finish()[1].max_turns is True


def test_claude_stream_cut_short_returns_open_calls_and_no_status() -> None:
    parser = ClaudeStreamParser()
    tool = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "sleep 100"}}
    parser.feed(json.dumps({"type": "assistant", "message": {"id": "m", "content": [tool]}}))
    parser.feed('{"type":"user","message":{"content":[{"type":"tool_res')  # killed mid-line
    left, r = parser.finish()
    assert left == [ToolCall("Bash", "sleep 100", "t1")]
    assert (r.status, r.is_error, r.unparsed_lines, r.tool_calls) == (None, None, 1, 1)


def test_claude_targets_are_one_line_and_cut() -> None:
    parser = ClaudeStreamParser()
    command = "echo " + "x" * 500 + "\nmore"
    blocks = [
        {"type": "tool_use", "id": "a", "name": "Bash", "input": {"command": command}},
        {"type": "tool_use", "id": "b", "name": "WebFetch", "input": {"url": "https://x.test"}},
        {"type": "tool_use", "id": "c", "name": "TodoWrite", "input": {"todos": [{}, {}]}},
    ]
    parser.feed(json.dumps({"type": "assistant", "message": {"id": "m", "content": blocks}}))
    left, _ = parser.finish()
    assert len(left[0].target or "") == TARGET_CHARS and "\n" not in (left[0].target or "")
    assert [c.target for c in left[1:]] == ["https://x.test", "2 items"]


# --- Codex ------------------------------------------------------------------


def test_codex_run_gives_calls_usage_without_cached_and_an_estimated_cost() -> None:
    done, left, r, tail = replay("codex-basic.jsonl", model="gpt-5-codex")
    assert [(c.tool, c.target, c.exit_code, c.is_error) for c in done] == [
        ("shell", "bash -lc ls", 0, False),
        ("file_change", "add /work/repo/src/settings.py", None, False),
        ("shell", "bash -lc 'python -m pytest -q'", 1, True),
        ("mcp:github.search_issues", '{"query":"settings"}', None, False),
        ("web_search", "pytest rootdir conftest", None, False),
    ]
    assert left == []
    assert r.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"  # thread.started.thread_id
    assert r.model == "gpt-5-codex"  # from the caller: the stream names none
    # input_tokens 24763 includes the 24448 cached ones.
    assert (r.input_tokens, r.cache_read_tokens, r.output_tokens) == (315, 24448, 122)
    assert (r.status, r.is_error, r.turns, r.tool_calls) == ("success", False, 1, 5)
    assert r.cost_estimated is True
    assert r.cost_usd == pytest.approx((315 * 1.25 + 24448 * 0.125 + 122 * 10) / 1e6)
    assert tail == "Added src/settings.py; one test still fails."


def test_codex_usage_is_cumulative_the_last_turn_completed_wins() -> None:
    parser = CodexJsonParser(model="gpt-5")
    for total_in, cached, out in ((100, 40, 10), (250, 120, 30)):
        usage = {"input_tokens": total_in, "cached_input_tokens": cached, "output_tokens": out}
        parser.feed(json.dumps({"type": "turn.started"}))
        parser.feed(json.dumps({"type": "turn.completed", "usage": usage}))
    _, r = parser.finish()
    assert (r.input_tokens, r.cache_read_tokens, r.output_tokens, r.turns) == (130, 120, 30, 2)


def test_codex_unknown_model_has_no_cost_not_zero() -> None:
    _, _, r, _ = replay("codex-basic.jsonl", model="some-local-model")
    assert (r.cost_usd, r.cost_estimated) == (None, False)
    _, _, r, _ = replay("codex-basic.jsonl", model=None)
    assert (r.cost_usd, r.cost_estimated) == (None, False)


def test_codex_killed_run_has_no_status_and_returns_the_running_command() -> None:
    done, left, r, tail = replay("codex-killed.jsonl", model="gpt-5-codex")
    assert done == []
    assert left == [ToolCall("shell", "bash -lc 'pytest -x'", "item_1")]
    assert (r.status, r.is_error, r.input_tokens, r.cost_usd) == (None, None, None, None)
    assert r.unparsed_lines == 1  # the truncated last line
    assert tail == "Running the test suite."


def test_codex_turn_failed_is_an_error_with_the_message() -> None:
    _, _, r, _ = replay("codex-turn-failed.jsonl")
    assert (r.status, r.is_error) == ("turn.failed", True)
    assert r.errors[-1] == "You've hit your usage limit."


def test_codex_old_item_type_and_assistant_message_are_read() -> None:
    done, _, r, tail = replay("codex-legacy-item-type.jsonl", model="gpt-5-codex")
    assert [(c.tool, c.exit_code) for c in done] == [("shell", 0)]
    assert tail == "Created note.txt with PING."
    assert (r.input_tokens, r.cache_read_tokens, r.unparsed_lines) == (2000, 3000, 0)


def test_codex_old_id_msg_events_are_read() -> None:
    done, _, r, tail = replay("codex-legacy-msg.jsonl")
    assert [(c.tool, c.target, c.exit_code) for c in done] == [
        ("shell", "bash -lc echo PING > note.txt", 0)
    ]
    assert (r.session_id, r.model, r.status) == (
        "f47e4fde-f03b-498c-9abb-be8247bbd7a9",
        "gpt-5",
        "success",
    )
    assert (r.input_tokens, r.cache_read_tokens, r.output_tokens) == (500, 500, 200)
    assert r.cost_estimated is True and r.unparsed_lines == 0
    assert tail == "Created note.txt."


def test_codex_session_created_and_unknown_old_events() -> None:
    parser = CodexJsonParser()
    parser.feed(json.dumps({"type": "session.created", "session_id": "s-old"}))
    parser.feed(json.dumps({"id": "0", "msg": {"type": "some_future_event"}}))
    parser.feed(json.dumps({"type": "item.completed", "item": {"id": "i", "type": "hologram"}}))
    _, r = parser.finish()
    assert (r.session_id, r.unparsed_lines) == ("s-old", 2)


# --- Both, and make_parser ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["claude-stream", "codex-json"])
def test_garbage_unknown_types_and_truncated_lines_are_counted_not_raised(fmt: str) -> None:
    parser = make_parser(fmt)
    junk = ["not json", "[1, 2]", '"text"', "{", '{"type": "warp_drive"}', '{"type": 7}', "null"]
    for line in [*junk, "", "   "]:
        assert parser.feed(line) == []
    left, r = parser.finish()
    assert left == [] and r.unparsed_lines == len(junk)


def test_make_parser_text_and_unknown_format() -> None:
    parser = make_parser("text")
    assert isinstance(parser, TextParser)
    parser.feed("hello")
    assert parser.text_tail(3) == "llo"
    assert parser.finish() == ([], AgentResult())
    with pytest.raises(ValueError, match="unknown output format"):
        make_parser("xml")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "type",
        "subtype",
        "message",
        "content",
        "usage",
        "id",
        "item",
        "msg",
        "is_error",
        "modelUsage",
        "tool_use_id",
        "input",
        "name",
        "result",
        "thread_id",
        "item_type",
        "exit_code",
        "changes",
    ]
)
TYPES = st.sampled_from(
    [
        "system",
        "assistant",
        "user",
        "result",
        "thread.started",
        "turn.completed",
        "turn.failed",
        "item.started",
        "item.completed",
        "tool_use",
        "tool_result",
        "text",
        "command_execution",
        "file_change",
        "mcp_tool_call",
        "exec_command_end",
        "token_count",
        "session_configured",
    ]
)
SHAPED = st.recursive(
    TYPES | JSON_VALUES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
LINES = st.one_of(
    st.text(max_size=40),
    SHAPED.map(json.dumps),
    SHAPED.map(lambda v: json.dumps(v)[: len(json.dumps(v)) // 2]),
)


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(["claude-stream", "codex-json", "text"]), lines=st.lists(LINES, max_size=12)
)
def test_random_lines_never_raise(fmt: str, lines: list[str]) -> None:
    parser = make_parser(fmt, model="gpt-5")
    for line in lines:
        for call in parser.feed(line):
            assert isinstance(call, ToolCall)
            assert call.target is None or len(call.target) <= TARGET_CHARS
    left, result = parser.finish()
    assert all(isinstance(c, ToolCall) for c in left)
    assert result.unparsed_lines <= len(lines)
    assert result.cost_usd is None or result.cost_usd >= 0
    assert isinstance(parser.text_tail(100), str)
