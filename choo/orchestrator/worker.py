"""A worker does one unit: its tasks in order, each with retries.

Per task: run the provider with a prompt built from the task file
(``agentcall``), then the task's backpressure command (a shell command in
the repository root, or in the unit's worktree when the run is isolated:
``isolation``). A failure is retried, with its output in the next
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

from choo.orchestrator import planfile
from choo.orchestrator.agentcall import FEEDBACK_CHARS, CallContext, call_agent
from choo.orchestrator.discovery import Task, Unit
from choo.orchestrator.events import EventBus
from choo.orchestrator.frontmatter import set_status, split
from choo.orchestrator.gitwork import GitError
from choo.orchestrator.isolation import RunSpace, UnitSetupFailed, UnitSpace
from choo.orchestrator.planfile import PlanFileRefused
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
    space: RunSpace | None = None  # an isolated run's worktrees and branches


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
        """Do every unfinished task of ``unit``; False once one fails for good.

        In an isolated run (``settings.space``) the unit works in its own
        worktree, and completes once its branch is merged into the run branch.
        """
        started = time.monotonic()
        provider = self.settings.unit_providers.get(unit.id, self.settings.provider)
        space: UnitSpace | None = None
        where: dict[str, Any] = {}
        if self.settings.space is not None:
            try:
                space, unit = await self.settings.space.open_unit(unit)
            except (UnitSetupFailed, GitError) as exc:
                self._unit_failed(unit, str(exc), started, stop_reason=None)
                return False
            where = space.describe()
        todo = [t for t in unit.tasks if t.status != "complete"]
        self.bus.emit(
            "unit.started",
            unit=unit.id,
            tasks=len(unit.tasks),
            pending=len(todo),
            provider=provider.name,
            **where,
        )
        try:
            ok = await self._tasks_then_merge(unit, todo, provider, space, started)
        except BaseException:
            if space is not None and self.settings.space is not None:
                with trio.CancelScope(shield=True):
                    await self.settings.space.close_unit(space, "stopped")
            raise
        if space is not None and self.settings.space is not None:
            await self.settings.space.close_unit(space, "merged" if ok else "failed")
        return ok

    async def _tasks_then_merge(
        self,
        unit: Unit,
        todo: list[Task],
        provider: Provider,
        space: UnitSpace | None,
        started: float,
    ) -> bool:
        for task in todo:
            try:
                reason = await self.run_task(unit, task, provider, space)
            except GitError as exc:
                reason = f"task {task.number} ({task.title}): {exc}"
            if reason is not None:
                self._unit_failed(unit, reason, started, failed_task=task.number, space=space)
                return False
        if space is not None:
            reason = await self._merge(unit, provider, space)
            if reason is not None:
                self._unit_failed(unit, reason, started, stop_reason="merge_conflict", space=space)
                return False
        self.bus.emit(
            "unit.completed", unit=unit.id, tasks=len(unit.tasks), duration_ms=_ms(started)
        )
        return True

    def _unit_failed(
        self,
        unit: Unit,
        reason: str,
        started: float,
        *,
        failed_task: int | None = None,
        stop_reason: str | None = None,
        space: UnitSpace | None = None,
    ) -> None:
        extra: dict[str, Any] = {}
        if failed_task is not None:
            extra["failed_task"] = failed_task
        if stop_reason is not None:
            extra["stop_reason"] = stop_reason
        if space is not None:
            extra["worktree"] = str(space.root)
        self.bus.emit(
            "unit.failed",
            unit=unit.id,
            error=reason,
            reason=reason,
            duration_ms=_ms(started),
            **extra,
        )

    async def run_task(
        self, unit: Unit, task: Task, provider: Provider, space: UnitSpace | None = None
    ) -> str | None:
        """Run one task with retries; None on success, else why it failed."""
        s = self.settings
        started = time.monotonic()
        ids: dict[str, Any] = {"unit": unit.id, "task": task.number}
        self.bus.emit("task.started", **ids, title=task.title, max_attempts=s.attempts)
        since = await s.space.head(space) if s.space is not None and space is not None else None
        feedback: str | None = None
        ended: list[str] = []  # each failed attempt's stop reason
        last = Attempt("agent_not_started", "not attempted")
        for attempt in range(1, s.attempts + 1):
            try:
                last = await self._attempt(unit, task, provider, attempt, feedback, space)
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
                # The status and its commit go together: a stop between them would
                # leave a task complete in its worktree with its work uncommitted.
                with trio.CancelScope(shield=True):
                    set_status(task.path, "complete")
                    if s.space is not None and space is not None and since is not None:
                        await s.space.commit_task(space, task, attempt, since)
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

    def _root(self, space: UnitSpace | None) -> Path:
        return space.root if space is not None else self.settings.repo_root

    async def _attempt(
        self,
        unit: Unit,
        task: Task,
        provider: Provider,
        attempt: int,
        feedback: str | None,
        space: UnitSpace | None = None,
    ) -> Attempt:
        s = self.settings
        ctx = CallContext(
            unit=unit.id,
            task=task.number,
            attempt=attempt,
            run_id=s.run_id,
            repo_root=self._root(space),
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
        return await self._validate(unit, task, attempt, space)

    async def _validate(
        self, unit: Unit, task: Task, attempt: int, space: UnitSpace | None = None
    ) -> Attempt:
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
                task.backpressure,
                cwd=self._root(space),
                shell=True,
                timeout=s.backpressure_timeout,
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

    # -- merging an isolated unit --------------------------------------------

    async def _merge(self, unit: Unit, provider: Provider, space: UnitSpace) -> str | None:
        """Merge the unit into the run branch; None when it merged, else why not.

        On a conflict the unit's agent gets one attempt to resolve it in the
        unit's worktree (the run branch merged in, markers left for it); its
        validations then run again, and the merge is tried once more.
        """
        run = self.settings.space
        assert run is not None
        files = await run.merge(space)
        if not files:
            return None
        run.conflict(space, files)
        before = await run.head(space)
        conflicted = await run.bring_in_run_branch(space)
        if conflicted:
            left = await self._resolve(unit, provider, space, conflicted)
            if left:
                return (
                    "its branch conflicts with the run branch in "
                    f"{', '.join(left[:10])}, and its agent did not resolve it"
                )
            await run.conclude_merge(space)
        if unit.tasks and before is not None:
            # The merge (and the agent's fixes) as the resolution attempt's commit.
            await run.commit_task(space, unit.tasks[-1], self.settings.attempts + 1, before)
        failed = await self._revalidate(unit, space)
        if failed is not None:
            return f"after the conflict was resolved, {failed}"
        files = await run.merge(space)
        if files:
            run.conflict(space, files)
            return f"its branch still conflicts with the run branch in {', '.join(files[:10])}"
        return None

    async def _resolve(
        self, unit: Unit, provider: Provider, space: UnitSpace, files: list[str]
    ) -> list[str]:
        """The agent's one attempt at the conflict; the files still in conflict."""
        s = self.settings
        assert s.space is not None
        last = unit.tasks[-1] if unit.tasks else None
        ctx = CallContext(
            unit=unit.id,
            task=last.number if last is not None else 0,
            attempt=s.attempts + 1,  # after every attempt its tasks could have had
            run_id=s.run_id,
            repo_root=space.root,
            timeout=s.provider_timeout,
            prompts=s.prompts,
            prices=s.prices,
        )
        await call_agent(self.bus, provider, conflict_prompt(unit, space, files), ctx)
        return await s.space.unresolved(space, files)

    async def _revalidate(self, unit: Unit, space: UnitSpace) -> str | None:
        """Every validation of the unit again, on the merged work."""
        for task in unit.tasks:
            if task.backpressure:
                check = await self._validate(unit, task, self.settings.attempts + 1, space)
                if check.stop_reason is not None:
                    return check.reason
        return None


def conflict_prompt(unit: Unit, space: UnitSpace, files: list[str]) -> str:
    listed = "\n".join(f"- {f}" for f in files)
    return (
        f"You are working on unit `{unit.id}`. Its work is done, but merging the run's "
        f"branch into yours (`{space.branch}`) stopped on conflicts in these files:\n\n"
        f"{listed}\n\n"
        "Resolve every conflict: keep what both sides meant to do, and remove every "
        "conflict marker (<<<<<<<, =======, >>>>>>>). Do not commit; choo commits the "
        "merge and runs the unit's validations again.\n"
    )


def build_prompt(unit: Unit, task: Task, attempt: int, feedback: str | None) -> str:
    plan_text = ""
    with contextlib.suppress(OSError, ValueError, PlanFileRefused):  # context, not required
        _, plan_text, _ = split(planfile.read_text(unit.plan_file, root=None))
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
