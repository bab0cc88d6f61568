"""A worker does one unit: its tasks in order, each with retries.

Per task: run the provider with a prompt built from the task file
(``agentcall``), then the task's backpressure command (a shell command in
the repository root). A failure is retried, with its output in the next
prompt; success writes ``status: complete`` into the task file.

Every attempt ends with a ``stop_reason`` (``protocol.events.STOP_REASONS``)
on ``task.completed``, ``task.retry`` or ``task.failed``. A task that passed
only after one of its validations failed in this run is ``flaky``. An
attempt cut short by the run stopping ends with ``task.failed`` and
``cancelled``; its task file keeps its status, so a resume does it again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from choo.orchestrator.agentcall import FEEDBACK_CHARS, CallContext, call_agent
from choo.orchestrator.discovery import Task, Unit
from choo.orchestrator.events import EventBus
from choo.orchestrator.frontmatter import set_status, split
from choo.orchestrator.process import Completed, StartFailed, run_process
from choo.orchestrator.promptdir import PromptDir
from choo.orchestrator.providers import Provider
from protocol.settings import default

VALIDATION_FAILURES = frozenset({"validation_failed", "validation_timeout"})


@dataclass(frozen=True)
class WorkerSettings:
    provider: Provider
    repo_root: Path
    # Units whose plan names another provider than the run's.
    unit_providers: dict[str, Provider] = field(default_factory=dict)
    attempts: int = default("attempts")
    provider_timeout: float = default("provider.timeout")
    backpressure_timeout: float = default("backpressure.timeout")
    run_id: str | None = None  # for the agents' OTEL_RESOURCE_ATTRIBUTES
    prompts: PromptDir | None = None  # the run's private prompt folder (else one per call)
    prices: Mapping[str, Any] | None = None  # the price table, to estimate a cost


@dataclass(frozen=True)
class Attempt:
    """How one attempt ended: ``stop_reason`` None when it passed."""

    stop_reason: str | None
    reason: str = ""
    feedback: str = ""


class Worker:
    def __init__(self, bus: EventBus, settings: WorkerSettings) -> None:
        self.bus = bus
        self.settings = settings

    async def run_unit(self, unit: Unit) -> bool:
        """Do every unfinished task of ``unit``; False once one fails for good."""
        started = time.monotonic()
        todo = [t for t in unit.tasks if t.status != "complete"]
        provider = self.settings.unit_providers.get(unit.id, self.settings.provider)
        self.bus.emit(
            "unit.started",
            unit=unit.id,
            tasks=len(unit.tasks),
            pending=len(todo),
            provider=provider.name,
        )
        for task in todo:
            reason = await self.run_task(unit, task, provider)
            if reason is not None:
                self.bus.emit(
                    "unit.failed",
                    unit=unit.id,
                    error=reason,
                    failed_task=task.number,
                    reason=reason,
                    duration_ms=_ms(started),
                )
                return False
        self.bus.emit(
            "unit.completed", unit=unit.id, tasks=len(unit.tasks), duration_ms=_ms(started)
        )
        return True

    async def run_task(self, unit: Unit, task: Task, provider: Provider) -> str | None:
        """Run one task with retries; None on success, else why it failed."""
        s = self.settings
        started = time.monotonic()
        ids: dict[str, Any] = {"unit": unit.id, "task": task.number}
        self.bus.emit("task.started", **ids, title=task.title, max_attempts=s.attempts)
        feedback: str | None = None
        ended: list[str] = []  # each failed attempt's stop reason
        last = Attempt("agent_not_started", "not attempted")
        for attempt in range(1, s.attempts + 1):
            try:
                last = await self._attempt(unit, task, provider, attempt, feedback)
            except BaseException as exc:
                if not _cancelled(exc):
                    raise
                # The run stops: the attempt ends here, and says so.
                self.bus.emit(
                    "task.failed",
                    **ids,
                    error="the run was stopped during this attempt",
                    title=task.title,
                    attempts=attempt,
                    reason=f"the run was stopped during attempt {attempt}",
                    duration_ms=_ms(started),
                    stop_reason="cancelled",
                )
                raise
            if last.stop_reason is None:
                set_status(task.path, "complete")
                self.bus.emit(
                    "task.completed",
                    **ids,
                    title=task.title,
                    attempts=attempt,
                    duration_ms=_ms(started),
                    stop_reason="passed" if attempt == 1 else "passed_after_retry",
                    flaky=any(r in VALIDATION_FAILURES for r in ended),
                )
                return None
            ended.append(last.stop_reason)
            feedback = last.feedback
            if attempt < s.attempts:
                self.bus.emit(
                    "task.retry",
                    **ids,
                    attempt=attempt,
                    next_attempt=attempt + 1,
                    reason=last.reason,
                    stop_reason=last.stop_reason,
                )
        set_status(task.path, "failed")
        self.bus.emit(
            "task.failed",
            **ids,
            error=last.reason,
            title=task.title,
            attempts=s.attempts,
            reason=last.reason,
            duration_ms=_ms(started),
            stop_reason=last.stop_reason,
        )
        return f"task {task.number} ({task.title}): {last.reason}"

    async def _attempt(
        self, unit: Unit, task: Task, provider: Provider, attempt: int, feedback: str | None
    ) -> Attempt:
        s = self.settings
        ctx = CallContext(
            unit=unit.id,
            task=task.number,
            attempt=attempt,
            run_id=s.run_id,
            repo_root=s.repo_root,
            timeout=s.provider_timeout,
            prompts=s.prompts,
            prices=s.prices,
        )
        prompt = build_prompt(unit, task, attempt, feedback)
        agent = await call_agent(self.bus, provider, prompt, ctx)
        if agent.stop_reason is not None:
            return Attempt(agent.stop_reason, agent.reason or agent.stop_reason, agent.feedback)
        if not task.backpressure:
            return Attempt(None)
        return await self._validate(unit, task, attempt)

    async def _validate(self, unit: Unit, task: Task, attempt: int) -> Attempt:
        s = self.settings
        assert task.backpressure is not None
        ids: dict[str, Any] = {"unit": unit.id, "task": task.number}
        self.bus.emit(
            "task.backpressure",
            **ids,
            command=task.backpressure,
            attempt=attempt,
            timeout_s=s.backpressure_timeout,
        )
        try:
            check = await run_process(
                task.backpressure, cwd=s.repo_root, shell=True, timeout=s.backpressure_timeout
            )
        except StartFailed as exc:  # no shell, or a command over the argument limit
            check = Completed(None, exc.reason, 0, False)
        if check.ok:
            self.bus.emit(
                "task.validation.ok",
                **ids,
                command=task.backpressure,
                attempt=attempt,
                **_outcome(check),
            )
            return Attempt(None)
        if check.timed_out:
            stop, why = (
                "validation_timeout",
                f"validation timed out after {s.backpressure_timeout:g} s",
            )
        elif check.exit_code is None:
            stop, why = "validation_failed", f"validation `{task.backpressure}` could not start"
        else:
            stop = "validation_failed"
            why = f"validation `{task.backpressure}` exited with code {check.exit_code}"
        self.bus.emit(
            "task.validation.fail",
            **ids,
            error=why,
            command=task.backpressure,
            attempt=attempt,
            **_outcome(check),
        )
        return Attempt(stop, why, check.tail(FEEDBACK_CHARS))


def build_prompt(unit: Unit, task: Task, attempt: int, feedback: str | None) -> str:
    plan_text = ""
    with contextlib.suppress(OSError, ValueError):  # the plan is context, not required
        _, plan_text, _ = split(unit.plan_file.read_text(encoding="utf-8"))
    parts = [
        f"You are working on unit `{unit.id}`, task {task.number}: {task.title}",
        f"Task file: {task.path}",
    ]
    if plan_text.strip():
        parts += ["## Unit plan", plan_text.strip()]
    parts += ["## Task", task.body.strip()]
    if task.backpressure:
        parts += [
            "## Validation",
            f"When you are done, this command must succeed: `{task.backpressure}`",
        ]
    if feedback is not None:
        parts += [
            f"## Attempt {attempt - 1} failed",
            "Fix the cause. Its output ended with:",
            "```",
            feedback.rstrip(),
            "```",
        ]
    return "\n\n".join(parts) + "\n"


def _outcome(result: Completed) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "duration_ms": result.duration_ms,
        "timed_out": result.timed_out,
        "output_tail": result.tail(),
    }


def _cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)
