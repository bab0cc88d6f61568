"""Reading an agent's output as it streams: tool calls, usage, why it stopped.

``claude -p --output-format stream-json --verbose`` and ``codex exec --json``
write one JSON object per line. A parser takes the lines as they come
(``feed``), hands back each tool call once its outcome is known, and at the
end (``finish``) sums up the attempt: identity, turns, tokens, cost, status.
Plain text output (``text``) gives no tool calls and no usage.
``make_parser`` picks one by format.

Nothing here raises for what an agent writes: a line that does not parse, a
type it does not know, or a stream cut short is counted in
``unparsed_lines`` (or shows as a missing result) and reading goes on.
The traps of the real formats each parser handles are listed in its
docstring; tests/fixtures/agent-streams/README.md names the public
transcripts they come from.

Pure: no IO, no trio. The worker feeds it the agent's stdout line by line.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

import orjson

from protocol.prices import PriceTable, estimate_cost
from protocol.redact import redact_tail
from protocol.settings import OUTPUT_FORMATS as OUTPUT_FORMATS  # the one list, re-exported

OutputFormat = Literal["claude-stream", "codex-json", "text"]  # OUTPUT_FORMATS, in the settings
TARGET_CHARS = 200  # a tool call's target (path, command line, pattern) is cut to this


class ToolCall(NamedTuple):
    """One tool call of the agent: ``target`` is a short summary of its input.

    Immutable, and a NamedTuple rather than a frozen dataclass: one is made per
    tool call, and a frozen dataclass takes three times as long to make.
    """

    tool: str
    target: str | None
    call_id: str | None = None
    exit_code: int | None = None  # when the stream gives one (a shell command)
    is_error: bool | None = None  # when the stream says whether it failed


@dataclass(slots=True)
class AgentResult:
    """What the stream said of the whole attempt; None where it said nothing."""

    session_id: str | None = None
    model: str | None = None
    # The agent's own final status: "success", "error_max_turns",
    # "error_during_execution", "turn.failed", ...; None when the stream
    # ended without one (killed, cut short, plain text).
    status: str | None = None
    is_error: bool | None = None
    turns: int | None = None
    duration_ms: int | None = None
    api_duration_ms: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None
    cost_estimated: bool = False  # True when choo priced it from its table
    tool_calls: int = 0
    unparsed_lines: int = 0
    max_turns: bool = False  # it stopped at its turn limit
    errors: list[str] = field(default_factory=list)


class StreamParser(Protocol):
    def feed(self, line: str) -> list[ToolCall]:
        """Take one line of output (without its newline); the tool calls it completed."""
        ...

    def finish(self) -> tuple[list[ToolCall], AgentResult]:
        """The stream ended: calls still open (without outcome), and the summary."""
        ...

    def text_tail(self, chars: int) -> str:
        """The end of what the agent said (its messages, not the raw JSON)."""
        ...


TAIL_CHARS = 64 * 1024  # what a parser keeps of the agent's words


class _Tail:
    """The last ``TAIL_CHARS`` or so of text, kept as a bounded list of pieces."""

    def __init__(self) -> None:
        self._pieces: deque[str] = deque()
        self._chars = 0

    def add(self, text: str) -> None:
        self._pieces.append(text)
        self._chars += len(text) + 1
        while self._chars > TAIL_CHARS and len(self._pieces) > 1:
            self._chars -= len(self._pieces.popleft()) + 1

    def last(self) -> str | None:
        return self._pieces[-1] if self._pieces else None

    def text(self, chars: int) -> str:
        return redact_tail("\n".join(self._pieces), chars)


class TextParser:
    """Plain text output: no tool calls, no usage; the tail is the text itself."""

    def __init__(self) -> None:
        self._tail = _Tail()

    def feed(self, line: str) -> list[ToolCall]:
        self._tail.add(line)
        return []

    def finish(self) -> tuple[list[ToolCall], AgentResult]:
        return [], AgentResult()

    def text_tail(self, chars: int) -> str:
        return self._tail.text(chars)


def _load(line: str) -> dict[str, Any] | None:
    """The JSON object on ``line``, or None (not JSON, or not an object)."""
    try:
        value = orjson.loads(line)  # about twice as fast as json.loads on these lines
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int | None:
    kind = type(value)  # not isinstance: a bool is no count
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float and math.isfinite(value):
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(text: Any) -> str | None:
    """A target: one line, at most ``TARGET_CHARS``."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = json.dumps(text, separators=(",", ":"), default=str)
    if text.isprintable() and "  " not in text and text.strip() == text:
        flat = text  # the common case, already one clean line
    else:
        flat = " ".join(text.split())
    return flat[:TARGET_CHARS] if flat else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# Where a Claude Code tool keeps what it acts on, in order of preference:
# Bash/BashOutput the command, Read/Write/Edit/MultiEdit the file, NotebookEdit
# the notebook, Glob/Grep the pattern, LS the folder, WebFetch the URL,
# WebSearch the query, Task/Agent the description, Skill its name.
_CLAUDE_TARGET_KEYS = (
    "command",
    "file_path",
    "notebook_path",
    "pattern",
    "path",
    "url",
    "query",
    "description",
    "skill",
    "prompt",
)


def _claude_target(tool_input: Any) -> str | None:
    fields = _dict(tool_input)
    for key in _CLAUDE_TARGET_KEYS:
        if isinstance(fields.get(key), str) and fields[key]:
            return _short(fields[key])
    if isinstance(fields.get("todos"), list):
        return f"{len(fields['todos'])} items"
    return _short(fields) if fields else None


@dataclass(slots=True)
class _Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


def _claude_usage(usage: Any) -> _Usage | None:
    fields = _dict(usage)
    if not fields:
        return None
    return _Usage(
        _int(fields.get("input_tokens")) or 0,
        _int(fields.get("output_tokens")) or 0,
        _int(fields.get("cache_read_input_tokens")) or 0,
        _int(fields.get("cache_creation_input_tokens")) or 0,
    )


def _model_usage(model_usage: Any) -> _Usage | None:
    """The sum of ``modelUsage`` (camelCase, one entry per model, subagents included)."""
    entries = [e for e in _dict(model_usage).values() if isinstance(e, dict)]
    if not entries:
        return None
    total = _Usage()
    for entry in entries:
        total.input += _int(entry.get("inputTokens")) or 0
        total.output += _int(entry.get("outputTokens")) or 0
        total.cache_read += _int(entry.get("cacheReadInputTokens")) or 0
        total.cache_write += _int(entry.get("cacheCreationInputTokens")) or 0
    return total


class _Calls:
    """Tool calls started and not yet finished, by id, in order.

    Kept as tuples (tool, target, id): a ToolCall is built once, when the call
    ends."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[str, str | None, str | None]] = {}
        self.count = 0

    def start(self, tool: str, target: str | None, call_id: str | None) -> None:
        key = call_id or f"#{self.count}"
        if key not in self.open:
            self.count += 1
        self.open[key] = (tool, target, call_id)

    def end(
        self, call_id: str | None, exit_code: int | None = None, is_error: bool | None = None
    ) -> ToolCall | None:
        call = self.open.pop(call_id, None) if call_id else None
        if call is None:
            return None
        return ToolCall(call[0], call[1], call[2], exit_code, is_error)

    def rest(self) -> list[ToolCall]:
        rest = [ToolCall(tool, target, call_id) for tool, target, call_id in self.open.values()]
        self.open.clear()
        return rest


def _priced(result: AgentResult, prices: PriceTable | None) -> AgentResult:
    """Fill in an estimated cost when the stream reported none."""
    if result.cost_usd is None:
        result.cost_usd = estimate_cost(
            result.model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cache_read_tokens=result.cache_read_tokens,
            cache_write_tokens=result.cache_write_tokens,
            prices=prices,
        )
        result.cost_estimated = result.cost_usd is not None
    return result


class ClaudeStreamParser:
    """``claude -p --output-format stream-json --verbose``.

    Lines: ``system`` (subtype ``init``: session_id, model), ``assistant``
    (one content block per line: text, thinking, tool_use), ``user``
    (tool_result blocks, ``is_error``), ``result`` (the summary), and
    ``stream_event`` with --include-partial-messages. Traps handled:

    - one API message spans several ``assistant`` lines with the same
      ``message.id`` and a copy of its usage (output growing): each id counts
      once, with its largest output;
    - ``result.usage`` leaves out subagents' tokens, which only the camelCase
      ``modelUsage`` holds, while ``total_cost_usd`` includes them: tokens
      come from ``modelUsage`` when present; older versions say ``cost_usd``;
    - API failures end as ``subtype: success`` with ``is_error: true`` and
      ``error_max_turns`` has come with ``is_error: false``: ``is_error`` is
      true when either the flag or the subtype says so, and ``max_turns``
      comes from the subtype or ``terminal_reason``; ``errors[]`` and
      ``api_error_status`` go to ``errors``.
    """

    KNOWN = frozenset(
        {
            "system",
            "assistant",
            "user",
            "result",
            "stream_event",
            "rate_limit_event",
            "control_request",
            "control_response",
            "control_cancel_request",
            "keep_alive",
        }
    )

    def __init__(self, *, model: str | None = None, prices: PriceTable | None = None) -> None:
        self._prices = prices
        self._result = AgentResult(model=model)
        self._calls = _Calls()
        self._tail = _Tail()
        # API message id -> its usage as the stream gave it (read at the end)
        self._messages: dict[str, dict[str, Any]] = {}
        self._loose = _Usage()  # usage of assistant lines without an id
        self._loose_seen = False
        self._final: _Usage | None = None  # from the result line
        self._got_result = False

    def feed(self, line: str) -> list[ToolCall]:
        if not line.strip():
            return []
        event = _load(line)
        kind = event.get("type") if event is not None else None
        if event is None or not isinstance(kind, str) or kind not in self.KNOWN:
            self._result.unparsed_lines += 1
            return []
        try:
            return self._on(kind, event)
        except (TypeError, ValueError, AttributeError, KeyError):
            self._result.unparsed_lines += 1  # a known type in a shape we did not expect
            return []

    def _on(self, kind: str, event: dict[str, Any]) -> list[ToolCall]:
        if kind == "system":
            if event.get("subtype") == "init":
                self._result.session_id = _str(event.get("session_id")) or self._result.session_id
                self._result.model = _str(event.get("model")) or self._result.model
        elif kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            return self._user(event)
        elif kind == "result":
            self._on_result(event)
        return []

    def _assistant(self, event: dict[str, Any]) -> None:
        # The hottest path: one line per tool call (and per text block), so
        # lookups are spelled out rather than going through the helpers.
        message = event.get("message")
        if not isinstance(message, dict):
            message = {}
        r = self._result
        if r.session_id is None:
            r.session_id = _str(event.get("session_id"))
        if r.model is None:
            r.model = _str(message.get("model"))
        raw = message.get("usage")
        if isinstance(raw, dict) and raw:
            self._count_usage(_str(message.get("id")), raw)
        content = message.get("content")
        if isinstance(content, str):
            self._tail.add(content)
        elif isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                kind = block.get("type")
                if kind == "tool_use":
                    name = _str(block.get("name")) or "tool"
                    target = _claude_target(block.get("input"))
                    self._calls.start(name, target, _str(block.get("id")))
                elif kind == "text" and isinstance(block.get("text"), str):
                    self._tail.add(block["text"])

    def _count_usage(self, msg_id: str | None, raw: dict[str, Any]) -> None:
        """Keep an assistant line's usage: once per API message, or summed without an id."""
        if msg_id is not None:
            seen = self._messages.get(msg_id)
            # A repeat of a message counts only if it says more (its output grows).
            if seen is None or (_int(raw.get("output_tokens")) or 0) > (
                _int(seen.get("output_tokens")) or 0
            ):
                self._messages[msg_id] = raw
            return
        usage = _claude_usage(raw) or _Usage()
        self._loose_seen = True
        self._loose.input += usage.input
        self._loose.output += usage.output
        self._loose.cache_read += usage.cache_read
        self._loose.cache_write += usage.cache_write

    def _user(self, event: dict[str, Any]) -> list[ToolCall]:
        done: list[ToolCall] = []
        for block in _list(_dict(event.get("message")).get("content")):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                call = self._calls.end(
                    _str(block.get("tool_use_id")), is_error=block.get("is_error") is True
                )
                if call is not None:
                    done.append(call)
        return done

    def _on_result(self, event: dict[str, Any]) -> None:
        r = self._result
        self._got_result = True
        r.session_id = _str(event.get("session_id")) or r.session_id
        subtype = _str(event.get("subtype"))
        r.status = subtype
        reason = _str(event.get("terminal_reason"))
        r.max_turns = subtype == "error_max_turns" or reason == "max_turns"
        r.is_error = event.get("is_error") is True or (subtype is not None and subtype != "success")
        r.turns = _int(event.get("num_turns"))
        r.duration_ms = _int(event.get("duration_ms"))
        r.api_duration_ms = _int(event.get("duration_api_ms"))
        cost = event.get("total_cost_usd", event.get("cost_usd"))
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            r.cost_usd, r.cost_estimated = float(cost), False
        self._final = _model_usage(event.get("modelUsage")) or _claude_usage(event.get("usage"))
        r.errors += [e for e in _list(event.get("errors")) if isinstance(e, str) and e.strip()]
        if _int(event.get("api_error_status")) is not None:
            r.errors.append(f"API error status {event['api_error_status']}")
        if reason is not None and reason != "completed":
            r.errors.append(f"terminal reason: {reason}")
        text = event.get("result")
        if isinstance(text, str) and text and text != self._tail.last():
            self._tail.add(text)

    def finish(self) -> tuple[list[ToolCall], AgentResult]:
        r = self._result
        usage = self._final
        if usage is None and (self._messages or self._loose_seen):
            usage = _Usage()
            parts = [_claude_usage(raw) or _Usage() for raw in self._messages.values()]
            for part in [*parts, self._loose]:
                usage.input += part.input
                usage.output += part.output
                usage.cache_read += part.cache_read
                usage.cache_write += part.cache_write
        if usage is not None:
            r.input_tokens, r.output_tokens = usage.input, usage.output
            r.cache_read_tokens, r.cache_write_tokens = usage.cache_read, usage.cache_write
        if r.turns is None and self._messages:
            r.turns = len(self._messages)
        r.tool_calls = self._calls.count
        return self._calls.rest(), _priced(r, self._prices)

    def text_tail(self, chars: int) -> str:
        return self._tail.text(chars)


def _codex_call(item: dict[str, Any], kind: str) -> tuple[str, str | None] | None:
    """The tool and target an item stands for, or None if it is no tool call."""
    if kind == "command_execution":
        return "shell", _short(item.get("command"))
    if kind == "file_change":
        changes = [_dict(c) for c in _list(item.get("changes"))]
        paths = ", ".join(
            f"{c.get('kind', 'update')} {c.get('path')}" for c in changes if c.get("path")
        )
        return "file_change", _short(paths)
    if kind == "mcp_tool_call":
        name = ".".join(x for x in (_str(item.get("server")), _str(item.get("tool"))) if x)
        return f"mcp:{name or 'tool'}", _short(item.get("arguments") or None)
    if kind == "web_search":
        return "web_search", _short(item.get("query"))
    if kind == "collab_tool_call":
        return f"collab:{item.get('tool')}", _short(item.get("prompt"))
    return None


def _codex_outcome(item: dict[str, Any], kind: str) -> tuple[int | None, bool]:
    """(exit code, is_error) of a completed item."""
    failed = item.get("status") in ("failed", "declined")
    if kind == "command_execution":
        code = _int(item.get("exit_code"))
        return code, failed or (code is not None and code != 0)
    if kind == "mcp_tool_call":
        return None, failed or item.get("error") is not None
    return None, failed


class CodexJsonParser:
    """``codex exec --json`` (JSONL thread events).

    Lines: ``thread.started`` (``thread_id``), ``turn.started``,
    ``turn.completed`` (``usage``), ``turn.failed`` (``error``),
    ``item.started/updated/completed`` (agent_message, reasoning,
    command_execution with exit_code, file_change, mcp_tool_call, web_search,
    todo_list, error) and ``error``. Traps handled:

    - usage in ``turn.completed`` is cumulative per thread and its
      ``input_tokens`` includes the cached ones: the last usage wins, and
      input is counted without ``cached_input_tokens`` (and without
      ``cache_write_input_tokens`` where newer versions report it);
    - no cost and no model in the stream: the model comes from the caller
      (config or argv) and the cost from the price table, marked estimated;
    - a killed run ends with no ``turn.completed``: no status, and the open
      calls come back from ``finish``;
    - shapes before late 2025 are read too: ``item_type`` for ``type``,
      ``assistant_message`` for ``agent_message``, ``session.created``, and
      the ``{"id", "msg"}`` events (session_configured, agent_message,
      exec_command_begin/end, patch_apply_begin/end, token_count,
      task_complete, error); other old events count as unparsed.
    """

    KNOWN = frozenset(
        {
            "thread.started",
            "turn.started",
            "turn.completed",
            "turn.failed",
            "item.started",
            "item.updated",
            "item.completed",
            "item.plan.delta",
            "request_user_input",
            "error",
            "session.created",
            "session.resumed",
        }
    )
    ITEMS_WITHOUT_CALL = frozenset(
        {"agent_message", "assistant_message", "reasoning", "todo_list", "plan", "error"}
    )
    LEGACY_QUIET = frozenset(
        {
            "task_started",
            "agent_message_delta",
            "agent_reasoning",
            "agent_reasoning_delta",
            "exec_command_output_delta",
            "background_event",
            "turn_diff",
            "user_message",
        }
    )

    def __init__(self, *, model: str | None = None, prices: PriceTable | None = None) -> None:
        self._prices = prices
        self._result = AgentResult(model=model)
        self._calls = _Calls()
        self._tail = _Tail()
        self._turns = 0

    def feed(self, line: str) -> list[ToolCall]:
        if not line.strip():
            return []
        event = _load(line)
        try:
            done = self._on(event) if event is not None else None
        except (TypeError, ValueError, AttributeError, KeyError):
            done = None
        if done is None:
            self._result.unparsed_lines += 1
            return []
        return done

    def _on(self, event: dict[str, Any]) -> list[ToolCall] | None:
        """The calls this event completed; None when it is not one we read."""
        kind = event.get("type")
        if kind is None and isinstance(event.get("msg"), dict):
            return self._legacy(event["msg"])
        if kind is None and ("model" in event or "prompt" in event):
            # The old stream opened with a config summary, then the prompt.
            self._result.model = self._result.model or _str(event.get("model"))
            self._result.session_id = self._result.session_id or _str(event.get("session_id"))
            return []
        if not isinstance(kind, str) or kind not in self.KNOWN:
            return None
        r = self._result
        if kind in ("thread.started", "session.created", "session.resumed"):
            r.session_id = (
                _str(event.get("thread_id")) or _str(event.get("session_id")) or r.session_id
            )
        elif kind == "turn.started":
            self._turns += 1
        elif kind == "turn.completed":
            self._usage(_dict(event.get("usage")))
            r.status, r.is_error = "success", False
        elif kind == "turn.failed":
            r.status, r.is_error = "turn.failed", True
            message = _str(_dict(event.get("error")).get("message"))
            r.errors.append(message or "turn failed")
        elif kind == "error":
            r.errors.append(_str(event.get("message")) or "error")
        elif kind in ("item.started", "item.completed"):
            return self._item(_dict(event.get("item")), done=kind == "item.completed")
        return []

    def _usage(self, usage: dict[str, Any]) -> None:
        total_in = _int(usage.get("input_tokens")) or 0
        cached = _int(usage.get("cached_input_tokens")) or 0
        written = _int(usage.get("cache_write_input_tokens")) or 0
        r = self._result
        r.input_tokens = max(0, total_in - cached - written)
        r.cache_read_tokens, r.cache_write_tokens = cached, written
        r.output_tokens = _int(usage.get("output_tokens")) or 0

    def _item(self, item: dict[str, Any], *, done: bool) -> list[ToolCall] | None:
        kind = item.get("type") or item.get("item_type")
        if not isinstance(kind, str):
            return None
        if kind in self.ITEMS_WITHOUT_CALL:
            if (
                done
                and kind in ("agent_message", "assistant_message")
                and isinstance(item.get("text"), str)
            ):
                self._tail.add(item["text"])
            elif done and kind == "error":
                self._result.errors.append(_str(item.get("message")) or "error")
            return []
        item_id = _str(item.get("id"))
        started = self._calls.open.get(item_id) if item_id else None
        # A started item is read once; a file_change's changes may only come when it completes.
        named = started[:2] if started and (started[1] or not done) else _codex_call(item, kind)
        if named is None:
            return None
        if not done:
            if started is None:
                self._calls.start(named[0], named[1], item_id)
            return []
        exit_code, is_error = _codex_outcome(item, kind)
        if started is None:
            self._calls.count += 1  # seen only completed
        else:
            del self._calls.open[started[2] or ""]
        return [ToolCall(named[0], named[1], item_id, exit_code, is_error)]

    def _legacy(self, msg: dict[str, Any]) -> list[ToolCall] | None:
        kind = msg.get("type")
        if not isinstance(kind, str):
            return None
        r = self._result
        if kind == "session_configured":
            r.session_id = _str(msg.get("session_id")) or r.session_id
            r.model = r.model or _str(msg.get("model"))
        elif kind == "agent_message":
            text = msg.get("message", msg.get("content"))
            if isinstance(text, str):
                self._tail.add(text)
        elif kind == "exec_command_begin":
            command = msg.get("command")
            line = " ".join(map(str, command)) if isinstance(command, list) else command
            self._calls.start("shell", _short(line), _str(msg.get("call_id")))
        elif kind == "exec_command_end":
            code = _int(msg.get("exit_code"))
            call = self._calls.end(
                _str(msg.get("call_id")), exit_code=code, is_error=code not in (None, 0)
            )
            return [call] if call else []
        elif kind == "patch_apply_begin":
            target = ", ".join(str(p) for p in _dict(msg.get("changes")))
            self._calls.start("file_change", _short(target), _str(msg.get("call_id")))
        elif kind == "patch_apply_end":
            call = self._calls.end(_str(msg.get("call_id")), is_error=msg.get("success") is False)
            return [call] if call else []
        elif kind == "token_count":
            info = _dict(msg.get("info"))
            self._usage(_dict(info.get("total_token_usage")) or msg)
        elif kind == "task_complete":
            r.status, r.is_error = "success", False
            self._turns = self._turns or 1
            last = msg.get("last_agent_message")
            if isinstance(last, str) and last and last != self._tail.last():
                self._tail.add(last)
        elif kind in ("error", "stream_error"):
            r.errors.append(_str(msg.get("message")) or str(kind))
            if kind == "error":
                r.status, r.is_error = "error", True
        elif kind not in self.LEGACY_QUIET:
            return None
        return []

    def finish(self) -> tuple[list[ToolCall], AgentResult]:
        r = self._result
        r.turns = self._turns or None
        r.tool_calls = self._calls.count
        return self._calls.rest(), _priced(r, self._prices)

    def text_tail(self, chars: int) -> str:
        return self._tail.text(chars)


def make_parser(
    fmt: str, *, model: str | None = None, prices: Mapping[str, Mapping[str, float]] | None = None
) -> StreamParser:
    """The parser of output format ``fmt`` (one of ``OUTPUT_FORMATS``).

    ``model``: the model named in the config or on the command line, used when
    the stream names none (Codex) and for pricing; ``prices``: the price table
    (the ``prices`` setting), defaults when None.
    """
    if fmt == "claude-stream":
        return ClaudeStreamParser(model=model, prices=prices)
    if fmt == "codex-json":
        return CodexJsonParser(model=model, prices=prices)
    if fmt == "text":
        return TextParser()
    raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
