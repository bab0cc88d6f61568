"""How ``choo history diff A B`` reads: two runs side by side, deltas colored.

The daemon sets the runs side by side and works out each delta
(``GET /api/history/compare``); this only lays them out. A cell reads
"A → B Δ", or a single value when both runs agree. Every figure compared
(time, attempts, tokens, cost) is better lower: a delta down is green, up
is red.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from choo.term import duration_ms, plural, shown
from choo.usage_view import tokens_count, usd

UNIT_STYLE = {
    "completed": "green",
    "failed": "red",
    "stopped": "yellow",
    "running": "cyan",
    "blocked": "magenta",
    "queued": "blue",
    "pending": "dim",
}
ABSENT = "[dim]—[/]"

Shown = Callable[[Any], str]


def _count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def figure(pair: dict[str, Any], show: Shown) -> str:
    """A compared number: "A → B Δ" (the delta colored), or one value if they agree."""
    a, b, delta = pair["a"], pair["b"], pair["delta"]
    if a == b:
        return show(a)
    cell = f"{show(a)} → {show(b)}"
    return f"{cell} {delta_only(pair, show)}" if delta else cell


def outcome(pair: dict[str, Any]) -> str:
    """An outcome: "failed → completed" when it changed; "—" for a run without it."""
    a, b = pair["a"], pair["b"]
    if not pair["changed"]:
        return _status(a)
    return f"{_status(a)} → {_status(b)}"


def _status(status: str | None) -> str:
    if status is None:
        return ABSENT
    return f"[{UNIT_STYLE.get(status, 'white')}]{shown(status)}[/]"


def _reasons(pair: dict[str, Any]) -> str:
    def one(reasons: list[str | None] | None) -> str:
        if reasons is None:
            return ABSENT
        return ", ".join(shown(r or "-") for r in reasons) or "-"

    a, b = one(pair["a"]), one(pair["b"])
    return a if a == b else f"{a} → {b}"


def _only(row: dict[str, Any]) -> str:
    side = row["only_in"]
    return f" [cyan](only in {side.upper()})[/]" if side else ""


def summary_table(found: dict[str, Any]) -> Table:
    a, b, run = found["a"], found["b"], found["run"]
    table = Table(header_style="bold", title="Runs", title_justify="left")
    for name in ("", "A", "B", "B − A"):
        table.add_column(name)
    table.add_row("run", shown(a["id"]), shown(b["id"]), "")
    if not found["same_repo"]:
        table.add_row("repository", shown(a["repo_path"]), shown(b["repo_path"]), "")
    table.add_row("status", _status(run["status"]["a"]), _status(run["status"]["b"]), "")
    rows: list[tuple[str, str, Shown]] = [
        ("duration", "duration_ms", duration_ms),
        ("completed units", "completed_units", _count),
        ("failed units", "failed_units", _count),
        ("blocked units", "blocked_units", _count),
        ("attempts", "attempts", _count),
        ("tokens", "tokens", tokens_count),
        ("cost", "cost_usd", usd),
        ("agent time", "agent_ms", duration_ms),
        ("tool calls", "tool_calls", _count),
        ("resumes", "resume_count", _count),
    ]
    for label, key, show in rows:
        pair = run[key]
        table.add_row(label, show(pair["a"]), show(pair["b"]), delta_only(pair, show))
    return table


def delta_only(pair: dict[str, Any], show: Shown) -> str:
    """The delta alone, colored; "=" when the runs agree, "" when it is unknown."""
    delta = pair["delta"]
    if delta is None:
        return ""
    if delta == 0:
        return "[dim]=[/]"
    sign, style = ("+", "red") if delta > 0 else ("−", "green")
    return f"[{style}]{sign}{show(abs(delta))}[/]"


def units_table(units: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", title="Units (A → B)", title_justify="left")
    for name in ("Unit", "Outcome", "Duration", "Attempts", "Tokens", "Cost", "Stop reasons"):
        table.add_column(name)
    for u in units:
        mark = "[bold yellow]Δ[/] " if u["changed"] else ""
        table.add_row(
            mark + shown(u["unit"]) + _only(u),
            outcome(u["status"]),
            figure(u["duration_ms"], duration_ms),
            figure(u["attempts"], _count),
            figure(u["tokens"], tokens_count),
            figure(u["cost_usd"], usd),
            _reasons(u["stop_reasons"]),
        )
    return table


def tasks_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", title="Tasks (A → B)", title_justify="left")
    for name in ("Unit", "Task", "Title", "Outcome", "Duration", "Attempts", "Tokens", "Cost"):
        table.add_column(name)
    table.add_column("Attempts' stop reasons")
    for t in tasks:
        mark = "[bold yellow]Δ[/] " if t["changed"] else ""
        table.add_row(
            mark + shown(t["unit"]),
            f"#{t['task']}" + _only(t),
            shown(t["title"] or "-"),
            outcome(t["status"]) if t["status"]["changed"] else outcome(t["stop_reason"]),
            figure(t["duration_ms"], duration_ms),
            figure(t["attempts"], _count),
            figure(t["tokens"], tokens_count),
            figure(t["cost_usd"], usd),
            _reasons(t["stop_reasons"]),
        )
    return table


def footer(found: dict[str, Any], web: str) -> list[str]:
    """What changed in a line, and where to see it in the web UI."""
    changed = found["changed"]
    a, b = shown(found["a"]["id"]), shown(found["b"]["id"])
    lines = [
        f"{plural(changed['units'], 'unit')} and {plural(changed['tasks'], 'task')} changed"
        " · deltas are B − A: [green]down[/] is better, [red]up[/] worse"
    ]
    if not found["same_repo"]:
        lines.append("[yellow]note:[/] the two runs are of different repositories")
    lines.append(f"[dim]web: {web}/#/compare?a={a}&b={b}[/]")
    return lines
