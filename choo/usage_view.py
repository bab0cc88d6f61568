"""How what the agents did and cost reads in the terminal: costs, token counts,
a run's totals and the cross-run task table of ``choo history``."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from choo.term import duration_ms, shown

TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def totals_rows(totals: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The run's totals (what its agents did and cost), as summary rows."""
    if not totals:
        return []
    cost = usd(totals["cost_usd"], totals["cost_estimated"])
    if totals["cost_estimated"]:
        cost += " [dim](estimated)[/]"
    tokens = (
        f"{tokens_count(totals['input_tokens'])} in, "
        f"{tokens_count(totals['output_tokens'])} out, "
        f"{tokens_count(totals['cache_read_tokens'])} cache read, "
        f"{tokens_count(totals['cache_write_tokens'])} cache write"
    )
    return [
        ("cost", cost),
        ("tokens", tokens),
        ("agent time", duration_ms(totals["agent_ms"])),
        ("attempts", f"{totals['attempts']:,}"),
        ("tool calls", f"{totals['tool_calls']:,}"),
    ]


def usd(value: float | None, estimated: bool = False) -> str:
    """A cost for people: "$0.42", "~$0.42" when choo estimated it; None is "-"."""
    if value is None:
        return "-"
    text = f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.3f}"  # as the UI
    return "~" + text if estimated else text


def tokens_count(n: int | None) -> str:
    """A token count for people: "950", "12.3k", "4.1M"; None is "-"."""
    if n is None:
        return "-"
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def unit_tokens(u: dict[str, Any]) -> int:
    """All of a unit's tokens (the four kinds added up)."""
    return sum(int(u.get(k) or 0) for k in TOKEN_KINDS)


OUTCOME_MARK = {"passed": "[green]✓[/]", "passed_after_retry": "[yellow]✓[/]"}


def tasks_table(found: dict[str, Any]) -> Table:
    table = Table(header_style="bold", title_justify="left")
    table.title = f"Tasks of {shown(found['repo'])} across runs"
    right = ("Runs", "First try", "Flaky", "Duration", "Tokens", "Cost")
    for name in ("Unit", "Task", "Title", *right, "Latest"):
        table.add_column(name, justify="right" if name in (*right, "Task") else "left")
    for t in found["tasks"]:
        rate = t["first_try_pass_rate"]
        flaky = f"[yellow]{t['flaky_runs']}[/]" if t["flaky_runs"] else "0"
        table.add_row(
            shown(t["unit"]),
            str(t["task"]),
            shown(t["title"] or "-"),
            str(t["runs"]),
            "-" if rate is None else f"{rate:.0%}",
            flaky,
            duration_ms(t["median_duration_ms"]),
            tokens_count(t["median_tokens"]),
            usd(t["median_cost_usd"], t.get("cost_estimated", False)),
            " ".join(_outcome(o) for o in t["last"]),
        )
    return table


def _outcome(o: dict[str, Any]) -> str:
    reason = o["stop_reason"]
    if reason in OUTCOME_MARK:
        return OUTCOME_MARK[reason]
    return "[dim]·[/]" if reason is None else "[red]✗[/]"
