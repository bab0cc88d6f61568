"""What ``choo run`` prints while it works: one line per step that matters,
then a summary table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from choo.orchestrator.discovery import Plan
from choo.orchestrator.events import Event
from choo.orchestrator.scheduler import Tally
from choo.term import plural, shown


class ConsoleReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.unit_ms: dict[str, int] = {}

    def handle(self, e: Event) -> None:
        p = e.payload
        unit = shown(e.unit or "")
        where = f"[bold]{unit}[/] #{e.task}" if e.task is not None else f"[bold]{unit}[/]"
        line: str | None = None
        if e.type == "unit.started":
            todo = f"{p['pending']} of {plural(p['tasks'], 'task')} to do"
            line = f"[cyan]▶[/] {where} started ({todo})"
        elif e.type == "task.completed":
            line = (
                f"  [green]✓[/] {where} {shown(p['title'])} "
                f"[dim]({_attempts(p['attempts'])}, {_secs(p['duration_ms'])})[/]"
            )
        elif e.type == "task.retry":
            line = (
                f"  [yellow]↻[/] {where} attempt {p['attempt']} failed: "
                f"{shown(p['reason'])}; retrying"
            )
        elif e.type == "task.failed":
            line = (
                f"  [red]✗[/] {where} {shown(p['title'])} failed after "
                f"{_attempts(p['attempts'])}: {shown(p['reason'])}"
            )
        elif e.type == "unit.completed":
            self.unit_ms[e.unit or ""] = p["duration_ms"]
            line = f"[green]●[/] {where} completed [dim]({_secs(p['duration_ms'])})[/]"
        elif e.type == "unit.failed":
            self.unit_ms[e.unit or ""] = p["duration_ms"]
            line = f"[red]●[/] {where} failed"
            if p.get("worktree"):
                line += f" [dim](its worktree is kept: {shown(p['worktree'])})[/]"
        elif e.type == "unit.blocked":
            line = f"[magenta]⊘[/] {where} blocked by {shown(p['blocked_by'])}"
        elif e.type == "task.committed":
            line = (
                f"    [dim]⎇ {where} committed {shown(', '.join(x[:10] for x in p['shas']))} "
                f"(+{p['insertions']} −{p['deletions']})[/]"
            )
        elif e.type == "unit.merged":
            line = f"[green]⎇[/] {where} merged into {shown(p['into'])}"
        elif e.type == "unit.merge.conflict":
            files = ", ".join(p["files"][:5]) + (" …" if len(p["files"]) > 5 else "")
            line = (
                f"[yellow]⚠[/] {where} conflicts with {shown(p['into'])} in {shown(files)}; "
                "its agent tries to resolve it"
            )
        elif e.type == "unit.baseline.fail":
            line = (
                f"[yellow]⚠[/] baseline check {shown(p['name'])} failed after merging "
                f"{where}: {shown(e.error or '')}"
            )
        elif e.type == "run.stopped":
            line = f"[yellow]■[/] stopped: {shown(p['reason'])}"
        if line is not None:
            self.console.print(line)

    def summary(self, plan: Plan, tally: Tally) -> Table:
        table = Table(title="Summary", title_justify="left")
        table.add_column("unit")
        table.add_column("status")
        table.add_column("tasks", justify="right")
        table.add_column("time", justify="right")
        for unit in plan.units.values():
            status = _status(unit.id, tally)
            done = sum(1 for t in unit.tasks if t.status == "complete")
            ms = self.unit_ms.get(unit.id)
            table.add_row(
                shown(unit.id),
                status,
                f"{done}/{len(unit.tasks)}",
                _secs(ms) if ms is not None else "-",
            )
        return table


def _status(unit: str, tally: Tally) -> str:
    if unit in tally.done:
        return "[green]completed[/]"
    if unit in tally.failed:
        return "[red]failed[/]"
    if unit in tally.blocked:
        return "[magenta]blocked[/]"
    if unit in tally.running:
        return "[yellow]stopped[/]"
    return "[dim]not started[/]"


def _attempts(n: int) -> str:
    return plural(n, "attempt")


def _secs(ms: int) -> str:
    return f"{ms / 1000:.1f}s"
