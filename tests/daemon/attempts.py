"""Task events as the orchestrator writes them for an attempt (the issue 12 contract).

``Script`` hands out seqs and builds (type, unit, task, payload) steps; the
store tests turn them into rows, the web and CLI tests into messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Step = tuple[str, str, int, dict[str, Any]]  # (type, unit, task, payload)


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    titles: dict[tuple[str, int], str] = field(default_factory=dict)

    def add(self, kind: str, unit: str, task: int, **payload: Any) -> None:
        self.steps.append((kind, unit, task, payload))

    def started(self, unit: str, task: int, title: str) -> None:
        self.titles[unit, task] = title
        self.add("task.started", unit, task, title=title, max_attempts=3)

    def attempt(
        self,
        unit: str,
        task: int,
        attempt: int,
        *,
        tools: int = 2,
        tokens: tuple[int, int, int, int] = (100, 20, 1000, 10),
        cost: float | None = 0.5,
        estimated: bool = False,
        agent_ms: int = 1000,
        passed: bool = True,
        validation: str | None = "make test",
    ) -> None:
        """One attempt's events, up to its validation (not its end: see ``end``)."""
        self.add("task.claude.invoke", unit, task, provider="claude", attempt=attempt)
        for n in range(tools):
            self.add(
                "task.agent.tool",
                unit,
                task,
                attempt=attempt,
                tool="Bash",
                target=f"cmd {attempt}.{n}",
                call_id=f"c{n}",
                exit_code=0,
                is_error=False,
            )
        inp, out, cread, cwrite = tokens
        self.add(
            "task.agent.result",
            unit,
            task,
            provider="claude",
            attempt=attempt,
            session_id=f"sess-{unit}-{task}-{attempt}",
            model="claude-sonnet-4-5",
            status="success",
            is_error=False,
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=cread,
            cache_write_tokens=cwrite,
            cost_usd=cost,
            cost_estimated=estimated,
            tool_calls=tools,
        )
        self.add("task.claude.done", unit, task, attempt=attempt, exit_code=0, duration_ms=agent_ms)
        if validation is None:
            return
        self.add("task.backpressure", unit, task, command=validation, attempt=attempt)
        self.add(
            "task.validation.ok" if passed else "task.validation.fail",
            unit,
            task,
            command=validation,
            attempt=attempt,
            exit_code=0 if passed else 1,
            duration_ms=30,
            output_tail="ok" if passed else "FAILED test_x",
        )

    def retry(self, unit: str, task: int, attempt: int, reason: str) -> None:
        self.add(
            "task.retry",
            unit,
            task,
            attempt=attempt,
            next_attempt=attempt + 1,
            reason="failed",
            stop_reason=reason,
        )

    def completed(self, unit: str, task: int, attempts: int, *, flaky: bool = False) -> None:
        self.add(
            "task.completed",
            unit,
            task,
            title=self.titles.get((unit, task)),
            attempts=attempts,
            duration_ms=5000,
            stop_reason="passed" if attempts == 1 else "passed_after_retry",
            flaky=flaky,
        )

    def failed(self, unit: str, task: int, attempts: int, reason: str) -> None:
        self.add(
            "task.failed",
            unit,
            task,
            title=self.titles.get((unit, task)),
            attempts=attempts,
            reason="failed",
            duration_ms=7000,
            stop_reason=reason,
        )
