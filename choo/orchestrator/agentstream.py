"""Reading an agent's output as it streams: tool calls, usage, why it stopped.

``claude -p --output-format stream-json --verbose`` and ``codex exec --json``
write one JSON object per line. A parser takes the lines as they come
(``feed``), hands back each tool call once its outcome is known, and at the
end (``finish``) sums up the attempt: identity, turns, tokens, cost, status.
Plain text output (``text``) gives no tool calls and no usage.

Nothing here raises for what an agent writes: a line that does not parse, a
type it does not know, or a stream cut short is counted in
``unparsed_lines`` (or shows as a missing result) and reading goes on.

Pure: no IO, no trio. The worker feeds it the agent's stdout line by line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

OutputFormat = Literal["claude-stream", "codex-json", "text"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("claude-stream", "codex-json", "text")
TARGET_CHARS = 200  # a tool call's target (path, command line, pattern) is cut to this


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of the agent: ``target`` is a short summary of its input."""

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


class TextParser:
    """Plain text output: no tool calls, no usage; the tail is the text itself."""

    def __init__(self) -> None:
        self._tail: list[str] = []
        self._chars = 0

    def feed(self, line: str) -> list[ToolCall]:
        self._tail.append(line)
        self._chars += len(line) + 1
        while self._chars > 64 * 1024 and len(self._tail) > 1:
            self._chars -= len(self._tail.pop(0)) + 1
        return []

    def finish(self) -> tuple[list[ToolCall], AgentResult]:
        return [], AgentResult()

    def text_tail(self, chars: int) -> str:
        return "\n".join(self._tail)[-chars:]
