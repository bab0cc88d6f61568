"""A worker does one unit: its tasks in order, each with retries.

Per task: run the provider with a prompt built from the task file, then the
task's backpressure command (a shell command in the repository root). A
failure is retried, with its output in the next prompt; success writes
``status: complete`` into the task file.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from choo.orchestrator.discovery import Task, Unit
from choo.orchestrator.events import EventBus
from choo.orchestrator.frontmatter import set_status, split
from choo.orchestrator.process import Completed, run_process
from choo.orchestrator.providers import Provider
from protocol.settings import default

FEEDBACK_CHARS = 8000


@dataclass(frozen=True)
class WorkerSettings:
    provider: Provider
    repo_root: Path
    # Units whose plan names another provider than the run's.
    unit_providers: dict[str, Provider] = field(default_factory=dict)
    attempts: int = default("attempts")
    provider_timeout: float = default("provider.timeout")
    backpressure_timeout: float = default("backpressure.timeout")


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
        reason = "not attempted"
        for attempt in range(1, s.attempts + 1):
            reason_or_none = await self._attempt(unit, task, provider, attempt, feedback)
            if reason_or_none is None:
                set_status(task.path, "complete")
                self.bus.emit(
                    "task.completed",
                    **ids,
                    title=task.title,
                    attempts=attempt,
                    duration_ms=_ms(started),
                )
                return None
            reason, feedback = reason_or_none
            if attempt < s.attempts:
                self.bus.emit(
                    "task.retry", **ids, attempt=attempt, next_attempt=attempt + 1, reason=reason
                )
        set_status(task.path, "failed")
        self.bus.emit(
            "task.failed",
            **ids,
            error=reason,
            title=task.title,
            attempts=s.attempts,
            reason=reason,
            duration_ms=_ms(started),
        )
        return f"task {task.number} ({task.title}): {reason}"

    async def _attempt(
        self, unit: Unit, task: Task, provider: Provider, attempt: int, feedback: str | None
    ) -> tuple[str, str] | None:
        """One try; None on success, else (reason, output for the next prompt)."""
        s = self.settings
        ids: dict[str, Any] = {"unit": unit.id, "task": task.number}
        prompt = build_prompt(unit, task, attempt, feedback)
        with tempfile.NamedTemporaryFile(
            "w", prefix="choo-prompt-", suffix=".md", encoding="utf-8"
        ) as prompt_file:
            prompt_file.write(prompt)
            prompt_file.flush()
            argv = provider.argv(prompt, Path(prompt_file.name))
            self.bus.emit(
                "task.claude.invoke",
                **ids,
                provider=provider.name,
                attempt=attempt,
                program=argv[0],
                prompt_chars=len(prompt),
                timeout_s=s.provider_timeout,
            )
            agent = await run_process(
                argv,
                cwd=s.repo_root,
                timeout=s.provider_timeout,
                stdin=prompt.encode() if provider.stdin else None,
            )
        self.bus.emit(
            "task.claude.done", **ids, provider=provider.name, attempt=attempt, **_outcome(agent)
        )
        if not agent.ok:
            why = (
                f"agent timed out after {s.provider_timeout:g} s"
                if agent.timed_out
                else f"agent exited with code {agent.exit_code}"
            )
            return why, agent.tail(FEEDBACK_CHARS)
        if not task.backpressure:
            return None
        self.bus.emit(
            "task.backpressure",
            **ids,
            command=task.backpressure,
            attempt=attempt,
            timeout_s=s.backpressure_timeout,
        )
        check = await run_process(
            task.backpressure, cwd=s.repo_root, shell=True, timeout=s.backpressure_timeout
        )
        if check.ok:
            self.bus.emit(
                "task.validation.ok",
                **ids,
                command=task.backpressure,
                attempt=attempt,
                **_outcome(check),
            )
            return None
        why = (
            f"validation timed out after {s.backpressure_timeout:g} s"
            if check.timed_out
            else f"validation `{task.backpressure}` exited with code {check.exit_code}"
        )
        self.bus.emit(
            "task.validation.fail",
            **ids,
            error=why,
            command=task.backpressure,
            attempt=attempt,
            **_outcome(check),
        )
        return why, check.tail(FEEDBACK_CHARS)


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


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)
