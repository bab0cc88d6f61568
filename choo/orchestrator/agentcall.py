"""One call of an agent: its prompt, argv and environment, its output read
as it streams, and the events that say what it did.

``call_agent`` starts the provider's program with the prompt (on stdin, or
in a private file for a ``{prompt_file}`` template), feeds each line of its
stdout to the parser for the provider's output format
(``agentstream``), and emits as it goes:

- ``task.claude.invoke`` before the start;
- ``task.agent.tool`` for each tool call the parser completes, at once;
- after the exit: ``task.agent.tool`` for calls left open, then
  ``task.agent.result`` (the stream's summary), then ``task.claude.done``
  with the tail of what the agent said.

An agent that cannot be started (a missing program, an argument over the
kernel's limit) emits ``task.claude.done`` with the reason as its
``output_tail``, no result, and ends the attempt with ``agent_not_started``;
it never raises. A cancelled call (the run is stopping) still emits what it
knows before the cancellation goes on.

The agent's environment carries ``OTEL_RESOURCE_ATTRIBUTES`` extended with
``choo.run_id``, ``choo.unit``, ``choo.task`` and ``choo.attempt``, so that
the telemetry an agent exports itself can be joined to the attempt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from choo.orchestrator import agentstream
from choo.orchestrator.agentstream import AgentResult, StreamParser, ToolCall
from choo.orchestrator.events import EventBus
from choo.orchestrator.process import MAX_ARG_BYTES, Completed, StartFailed, run_process
from choo.orchestrator.promptdir import PromptDir, PromptFileError
from choo.orchestrator.providers import Provider
from protocol.redact import redact_tail

log = logging.getLogger("choo.agentcall")

OTEL_VAR = "OTEL_RESOURCE_ATTRIBUTES"
TAIL_CHARS = 2000  # task.claude.done's output_tail
FEEDBACK_CHARS = 8000  # what a failed attempt tells the next prompt


@dataclass(frozen=True)
class AgentCall:
    """How one agent call ended. ``stop_reason`` is None when it did its job."""

    stop_reason: str | None
    reason: str | None  # for a user, when it failed
    feedback: str  # the end of its output, for the next prompt
    result: AgentResult | None  # None when it did not start


@dataclass(frozen=True)
class CallContext:
    """Who the call is for: the task, the attempt, and where it runs."""

    unit: str
    task: int
    attempt: int
    run_id: str | None
    repo_root: Path
    timeout: float
    prompts: PromptDir | None = None
    prices: Any = None  # the price table, for parsers that estimate a cost


async def call_agent(bus: EventBus, provider: Provider, prompt: str, ctx: CallContext) -> AgentCall:
    ids: dict[str, Any] = {"unit": ctx.unit, "task": ctx.task}
    try:
        with _prompt_file(ctx, prompt) as prompt_file:
            return await _call(bus, ids, provider, prompt, prompt_file, ctx)
    except PromptFileError as exc:
        return _not_started(bus, ids, provider, ctx, prompt, str(exc))


async def _call(
    bus: EventBus,
    ids: dict[str, Any],
    provider: Provider,
    prompt: str,
    prompt_file: Path,
    ctx: CallContext,
) -> AgentCall:
    parser = make_parser(provider, ctx.prices)
    emitted = 0
    broken = 0  # lines the parser choked on (it should not)

    def on_line(line: str) -> None:
        nonlocal emitted, broken
        try:
            calls = parser.feed(line)
        except Exception:
            log.exception("the %s parser failed on a line; it is counted unparsed", provider.output)
            broken += 1
            return
        for call in calls:
            _emit_tool(bus, ids, ctx.attempt, call)
        emitted += len(calls)

    argv = provider.argv(prompt, prompt_file)
    bus.emit(
        "task.claude.invoke",
        **ids,
        provider=provider.name,
        attempt=ctx.attempt,
        program=argv[0],
        prompt_chars=len(prompt),
        timeout_s=ctx.timeout,
    )
    done: Completed | None = None
    failed: StartFailed | None = None
    started = time.monotonic()
    try:
        done = await run_process(
            argv,
            cwd=ctx.repo_root,
            timeout=ctx.timeout,
            stdin=prompt.encode() if provider.stdin else None,
            env=agent_env(os.environ, otel_attributes(ctx)),
            on_line=on_line,
            merge_stderr=provider.output == "text",
        )
    except StartFailed as exc:
        failed = exc
    finally:
        if done is None and failed is None:
            # Cancelled (the run stops): say what is known before it goes on.
            cut = int((time.monotonic() - started) * 1000)
            _close(bus, ids, provider, ctx, parser, emitted, broken, None, cut)
    if failed is not None:
        return _not_started(bus, ids, provider, ctx, prompt, failed.reason)
    assert done is not None
    result = _close(bus, ids, provider, ctx, parser, emitted, broken, done, done.duration_ms)
    return _judge(done, result, ctx, _said(parser, done, FEEDBACK_CHARS))


def make_parser(provider: Provider, prices: Any) -> StreamParser:
    """The parser for the provider's output format."""
    return agentstream.make_parser(provider.output, model=provider.model, prices=prices)


def otel_attributes(ctx: CallContext) -> dict[str, str]:
    attrs = {"choo.unit": ctx.unit, "choo.task": str(ctx.task), "choo.attempt": str(ctx.attempt)}
    return {"choo.run_id": ctx.run_id, **attrs} if ctx.run_id else attrs


def agent_env(base: Mapping[str, str], attrs: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``attrs`` added to OTEL_RESOURCE_ATTRIBUTES.

    The variable is ``key=value`` pairs joined by commas, values
    percent-encoded (W3C Baggage, as the OpenTelemetry SDK specification
    says). What the user set stays, but for keys of ours (a choo run
    started by an agent of another would carry that one's).
    """
    env = dict(base)
    kept = [
        pair.strip()
        for pair in env.get(OTEL_VAR, "").split(",")
        if pair.strip() and pair.partition("=")[0].strip() not in attrs
    ]
    ours = [f"{key}={quote(value, safe='')}" for key, value in attrs.items()]
    env[OTEL_VAR] = ",".join(kept + ours)
    return env


@contextlib.contextmanager
def _prompt_file(ctx: CallContext, prompt: str) -> Iterator[Path]:
    name = f"{ctx.unit}-{ctx.task}-{ctx.attempt}"
    if ctx.prompts is not None:
        with ctx.prompts.prompt_file(name, prompt) as path:
            yield path
        return
    try:
        folder = tempfile.TemporaryDirectory(prefix="choo-prompt-")  # mode 0700
    except OSError as exc:
        raise PromptFileError(f"could not make a prompt folder: {exc.strerror or exc}") from None
    with folder, PromptDir(Path(folder.name)).prompt_file(name, prompt) as path:
        yield path


def _emit_tool(bus: EventBus, ids: dict[str, Any], attempt: int, call: ToolCall) -> None:
    bus.emit(
        "task.agent.tool",
        **ids,
        attempt=attempt,
        tool=call.tool,
        target=call.target[: agentstream.TARGET_CHARS] if call.target else call.target,
        call_id=call.call_id,
        exit_code=call.exit_code,
        is_error=call.is_error,
    )


def _close(
    bus: EventBus,
    ids: dict[str, Any],
    provider: Provider,
    ctx: CallContext,
    parser: StreamParser,
    emitted: int,
    broken: int,
    done: Completed | None,
    duration_ms: int,
) -> AgentResult:
    """The stream ended (or was cut): open calls, the result, task.claude.done."""
    try:
        still_open, result = parser.finish()
    except Exception:
        log.exception("the %s parser failed at the end of the stream", provider.output)
        still_open, result = [], AgentResult()
    for call in still_open:
        _emit_tool(bus, ids, ctx.attempt, call)
    emitted += len(still_open)
    result.unparsed_lines += broken
    bus.emit(
        "task.agent.result",
        **ids,
        provider=provider.name,
        attempt=ctx.attempt,
        session_id=result.session_id,
        model=result.model or provider.model,
        status=result.status,
        is_error=result.is_error,
        turns=result.turns,
        duration_ms=result.duration_ms,
        api_duration_ms=result.api_duration_ms,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cache_read_tokens=result.cache_read_tokens,
        cache_write_tokens=result.cache_write_tokens,
        cost_usd=result.cost_usd,
        cost_estimated=result.cost_estimated,
        tool_calls=result.tool_calls or emitted,
        unparsed_lines=result.unparsed_lines,
    )
    bus.emit(
        "task.claude.done",
        **ids,
        provider=provider.name,
        attempt=ctx.attempt,
        exit_code=done.exit_code if done else None,
        duration_ms=duration_ms,
        timed_out=done.timed_out if done else False,
        output_tail=_said(parser, done, TAIL_CHARS),
    )
    return result


def _said(parser: StreamParser, done: Completed | None, chars: int) -> str:
    """The end of what the agent said, and of its stderr when kept apart."""
    text = parser.text_tail(chars)
    if done is not None and done.errors.strip():
        text = (text.rstrip("\n") + "\n" if text.strip() else "") + done.errors
        return redact_tail(text, chars)
    return text


def _not_started(
    bus: EventBus,
    ids: dict[str, Any],
    provider: Provider,
    ctx: CallContext,
    prompt: str,
    reason: str,
) -> AgentCall:
    if provider.prompt_in_argv and len(prompt.encode()) > MAX_ARG_BYTES:
        reason = (
            f"the prompt ({len(prompt.encode()) // 1024} KiB) is too long for an argument: "
            f"{reason}; put {{prompt_file}} in provider.command instead of {{prompt}} "
            "(the prompt is on stdin too)"
        )
    bus.emit(
        "task.claude.done",
        **ids,
        provider=provider.name,
        attempt=ctx.attempt,
        exit_code=None,
        duration_ms=0,
        timed_out=False,
        output_tail=reason,
    )
    return AgentCall("agent_not_started", f"agent not started: {reason}", reason, None)


def _judge(done: Completed, result: AgentResult, ctx: CallContext, said: str) -> AgentCall:
    if done.timed_out:
        return AgentCall("agent_timeout", f"agent timed out after {ctx.timeout:g} s", said, result)
    status = f" ({result.status})" if result.status and result.status != "success" else ""
    if result.max_turns:
        return AgentCall(
            "agent_max_turns", f"agent stopped at its turn limit{status}", said, result
        )
    if done.exit_code != 0:
        return AgentCall("agent_failed", f"agent exited with code {done.exit_code}", said, result)
    if result.is_error:
        first = f": {result.errors[0]}" if result.errors else ""
        return AgentCall("agent_failed", f"agent reported an error{status}{first}", said, result)
    return AgentCall(None, None, said, result)
