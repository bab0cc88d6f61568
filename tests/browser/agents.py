"""Fake runs whose agents report what they did: tool calls, usage, cost, stop reasons.

The events are the ones an orchestrator writes for each attempt (issue 12's
contract): ``task.claude.invoke``, one ``task.agent.tool`` per tool call,
``task.agent.result``, ``task.claude.done``, the validation, then
``task.retry`` / ``task.completed`` / ``task.failed`` with a ``stop_reason``.
The daemon keeps the roll-ups the UI shows from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.browser.support import FakeRun, Site


@dataclass
class Attempt:
    """One attempt of a task, as its events will say."""

    passed: bool = True
    stop_reason: str | None = None  # of a failed attempt (a passing one's is set by the task's end)
    tools: list[tuple[str, str, int | None, bool | None]] = field(default_factory=list)
    input_tokens: int = 1200
    output_tokens: int = 300
    cache_read_tokens: int = 5000
    cache_write_tokens: int = 800
    cost_usd: float | None = 0.0123
    cost_estimated: bool = False
    model: str = "claude-sonnet-4-5"
    session_id: str = "sess-1"
    agent_ms: int = 4200
    validation_ms: int = 350
    validation_output: str = "ok"
    status: str = "success"


def task_events(
    run: FakeRun, unit: str, task: int, title: str, attempts: list[Attempt], *, last: bool = True
) -> list[dict[str, Any]]:
    """A task's events, attempt by attempt, to its end (completed if the last attempt passed)."""
    e = run.event
    out = [e("task.started", unit, task, title=title, max_attempts=3)]
    flaky = False
    for n, a in enumerate(attempts, 1):
        out.append(e("task.claude.invoke", unit, task, provider="claude", attempt=n))
        for call, (tool, target, exit_code, is_error) in enumerate(a.tools, 1):
            out.append(
                e(
                    "task.agent.tool",
                    unit,
                    task,
                    attempt=n,
                    tool=tool,
                    target=target,
                    call_id=f"call_{n}_{call}",
                    exit_code=exit_code,
                    is_error=is_error,
                )
            )
        out.append(
            e(
                "task.agent.result",
                unit,
                task,
                provider="claude",
                attempt=n,
                session_id=a.session_id,
                model=a.model,
                status=a.status,
                is_error=False,
                turns=3,
                duration_ms=a.agent_ms,
                api_duration_ms=a.agent_ms - 200,
                input_tokens=a.input_tokens,
                output_tokens=a.output_tokens,
                cache_read_tokens=a.cache_read_tokens,
                cache_write_tokens=a.cache_write_tokens,
                cost_usd=a.cost_usd,
                cost_estimated=a.cost_estimated,
                tool_calls=len(a.tools),
                unparsed_lines=0,
            )
        )
        out.append(
            e(
                "task.claude.done",
                unit,
                task,
                provider="claude",
                exit_code=0,
                duration_ms=a.agent_ms,
                timed_out=False,
                output_tail="done",
            )
        )
        command = "python3 -m pytest -q"
        out.append(e("task.backpressure", unit, task, command=command, attempt=n))
        kind = "task.validation.ok" if a.passed else "task.validation.fail"
        out.append(
            e(
                kind,
                unit,
                task,
                command=command,
                exit_code=0 if a.passed else 1,
                duration_ms=a.validation_ms,
                output_tail=a.validation_output,
                attempt=n,
            )
        )
        if not a.passed:
            reason = a.stop_reason or "validation_failed"
            flaky = flaky or reason == "validation_failed"
            if n < len(attempts) or not last:
                out.append(
                    e("task.retry", unit, task, attempt=n, next_attempt=n + 1, stop_reason=reason)
                )
            else:
                out.append(
                    e(
                        "task.failed",
                        unit,
                        task,
                        title=title,
                        attempts=n,
                        reason="validation failed",
                        stop_reason=reason,
                        duration_ms=sum(a.agent_ms + a.validation_ms for a in attempts),
                    )
                )
    if attempts and attempts[-1].passed:
        n = len(attempts)
        out.append(
            e(
                "task.completed",
                unit,
                task,
                title=title,
                attempts=n,
                duration_ms=sum(a.agent_ms + a.validation_ms for a in attempts),
                stop_reason="passed" if n == 1 else "passed_after_retry",
                flaky=flaky,
            )
        )
    return out


def unit_events(
    run: FakeRun, unit: str, tasks: dict[int, tuple[str, list[Attempt]]]
) -> list[dict[str, Any]]:
    """A unit from queued to completed (or failed, if a task's last attempt failed)."""
    e = run.event
    out = [
        e("unit.queued", unit, tasks=len(tasks), depends_on=list(run.units.get(unit, []))),
        e("unit.started", unit, tasks=len(tasks), pending=len(tasks), provider="claude"),
    ]
    for task, (title, attempts) in tasks.items():
        out += task_events(run, unit, task, title, attempts)
        if not attempts[-1].passed:
            out.append(e("unit.failed", unit, error=f"task {task} failed"))
            return out
    out.append(e("unit.completed", unit, tasks=len(tasks), duration_ms=9000))
    return out


def api(site: Site, path: str, **params: Any) -> Any:
    """GET a daemon API path (with query parameters) and decode its JSON."""
    return site.get_json(path, **params)
