"""``choo history``: read, follow, export, import and prune the history; what tasks cost.

Each command parses its options, calls one function of ``choo.history`` and
formats what it returns: a rich table for people, ``--json`` for scripts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from choo import export, history, otlp_export
from choo.api import HistoryAPI, HistoryError, HistoryUnavailable
from choo.config import ConfigError
from choo.config import load as load_config
from choo.runner import repo_root_of
from choo.term import duration_ms, make_console, plural, print_json, shown, to_json, visible, warn
from choo.usage_view import tasks_table, tokens_count, totals_rows, unit_tokens, usd
from protocol.home import Home
from protocol.messages import RUN_STATUSES

history_app = typer.Typer(
    help="Read the history of runs from the terminal (the daemon must be running).",
    no_args_is_help=True,
)

out = make_console()
err = make_console(stderr=True)

STATUS_STYLE = {"completed": "green", "failed": "red", "stopped": "yellow", "running": "cyan"}
UNIT_STYLE = {**STATUS_STYLE, "blocked": "magenta", "queued": "blue", "pending": "dim"}
DEFAULT_LIMIT = 20

RunIdArg = Annotated[
    str, typer.Argument(help="The run's ID; a unique prefix is enough.", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {shown(message, lines=True)}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _reading() -> Iterator[None]:
    """Turn the history's errors into a message with a next step, and exit 1."""
    try:
        yield
    except (
        HistoryUnavailable,
        HistoryError,
        export.ExportFileError,
        export.RunConflict,
        otlp_export.OtlpExportError,
        ConfigError,
    ) as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _api() -> Iterator[HistoryAPI]:
    with _reading(), HistoryAPI.connect(Home.from_env()) as api:
        yield api


# -- list --------------------------------------------------------------------------


@history_app.command("list")
def list_cmd(
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="Runs of this repository (default: the current one)."),
    ] = None,
    all_repos: Annotated[bool, typer.Option("--all", help="Runs of every repository.")] = False,
    status: Annotated[
        str | None, typer.Option("--status", help="running, completed, failed or stopped.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = (
        DEFAULT_LIMIT
    ),
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first: by default those of the current repository."""
    if repo is not None and all_repos:
        raise _fail("give --repo PATH or --all, not both", 2)
    if status is not None and status not in RUN_STATUSES:
        raise _fail(f"--status {status}: must be one of {', '.join(RUN_STATUSES)}", 2)
    repo_path = None if all_repos else str(repo_root_of(repo or Path.cwd()))
    with _api() as api:
        found = history.list_runs(api, repo=repo_path, status=status, limit=limit)
    if as_json:
        print_json(found.to_dict())
        return
    if not found.runs:
        where = f" of {shown(found.repo)}" if found.repo else ""
        with_status = f" with status {status}" if status else ""
        out.print(f"no runs{where}{with_status} in the history")
        if found.repo:
            out.print("  runs of every repository: [bold]choo history list --all[/]")
        return
    out.print(_runs_table(found))
    _list_footer(found)


def _runs_table(found: history.RunList) -> Table:
    table = Table(header_style="bold", title_justify="left")
    where = found.repo or "all repositories"
    table.title = f"Runs of {shown(where)}" + (f" · {found.status}" if found.status else "")
    table.add_column("ID", no_wrap=True)
    if found.repo is None:
        table.add_column("Repository", min_width=16, overflow="fold")
    for name in ("Status", "Done/failed/blocked", "Started", "Duration"):
        table.add_column(name, no_wrap=True)
    table.add_column("Resumes", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for run in found.runs:
        row = [shown(run["id"])]
        if found.repo is None:
            row.append(shown(run["repo_path"]))
        row += [
            _status(run["status"]),
            _unit_counts(run),
            _local(run["started_at"]),
            _run_duration(run),
            str(run["resume_count"]),
            "[dim]dry run[/]" if run["dry_run"] else "",
        ]
        table.add_row(*row)
    return table


def _list_footer(found: history.RunList) -> None:
    shown = len(found.runs)
    line = f"{shown} of {plural(found.total, 'run')}"
    if found.more:
        line += f" · more: [bold]choo history list --limit {found.total}[/]"
    if found.repo is not None:
        line += " · every repository: [bold]choo history list --all[/]"
    out.print(f"[dim]{line}[/]")
    out.print("[dim]details: choo history show RUN_ID[/]")


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{shown(status)}[/]"


def _unit_counts(run: dict[str, Any]) -> str:
    if run["status"] == "running":
        return plural(run["total_units"], "unit")
    parts = [
        f"[green]{run['completed_units']}[/]",
        f"[red]{run['failed_units']}[/]" if run["failed_units"] else "0",
        f"[magenta]{run['blocked_units']}[/]" if run["blocked_units"] else "0",
    ]
    return "/".join(parts) + f" of {run['total_units']}"


def _local(iso: str | None, *, millis: bool = False) -> str:
    """A stored UTC time in local time, for people (as markup)."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return shown(iso)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + f".{moment.microsecond // 1000:03d}" if millis else text


def _run_duration(run: dict[str, Any]) -> str:
    return "running" if run["status"] == "running" else duration_ms(run["duration_ms"])


# -- show --------------------------------------------------------------------------


@history_app.command("show")
def show_cmd(run_id: RunIdArg, as_json: JsonOption = False) -> None:
    """One run: summary, unit counts, duration, stops and resumes, each unit's outcome,
    and for a run isolated in git: its branch, whether it landed, the commits of each
    task and the worktrees kept (failed or stopped units)."""
    with _api() as api:
        report = history.run_report(api, run_id)
        web = api.base_url
    if as_json:
        print_json(report)
        return
    run = report["run"]
    out.print(_summary(run, report["git"]))
    if run["markers"]:
        out.print(_markers(run["markers"]))
    if report["units"]:
        out.print(_units_table(report["units"]))
    git = report["git"]
    if git["commits"]:
        out.print(_commits_table(git["commits"]))
    if git["kept_worktrees"]:
        out.print(_kept_table(git["kept_worktrees"]))
        if any(Path(k["path"]).is_dir() for k in git["kept_worktrees"]):
            out.print(f"[dim]remove them once inspected: choo cleanup {shown(run['id'])}[/]")
    run_id = shown(run["id"])
    out.print(f"[dim]events: choo history events {run_id} · web: {web}/#/history?run={run_id}[/]")


def _summary(run: dict[str, Any], git: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2), title_justify="left")
    dry = " [dim](dry run)[/]" if run["dry_run"] else ""
    table.title = f"Run [bold]{shown(run['id'])}[/]{dry}"
    table.add_column(style="bold")
    table.add_column()
    units = (
        f"[green]{run['completed_units']} completed[/], {run['failed_units']} failed, "
        f"{run['blocked_units']} blocked of {run['total_units']}"
    )
    rows = [
        ("status", _status(run["status"])),
        ("repository", shown(run["repo_path"])),
        ("tasks", shown(run["tasks_dir"] or "-")),
        ("started", _local(run["started_at"])),
        ("ended", _local(run["completed_at"])),
        ("duration", _run_duration(run)),
        ("units", units),
        ("parallelism", str(run["parallelism"])),
        ("resumes", str(run["resume_count"])),
        ("events", f"{run['event_count']:,}"),
        *totals_rows(run.get("totals")),
        *_git_rows(git, run["status"]),
    ]
    if run["error"]:
        rows.append(("[red]error[/]", shown(run["error"])))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _git_rows(git: dict[str, Any], status: str) -> list[tuple[str, str]]:
    """The run branch and whether it landed (none for a run that was not isolated)."""
    if not git["branch"]:
        return []
    branch = shown(git["branch"])
    if git["base"]:
        start = f" from {shown(git['head_branch'])}" if git["head_branch"] else ""
        branch += f" [dim](started{start} at {shown(git['base'][:7])})[/]"
    rows = [("branch", branch)]
    land = git["land"]
    if land and land["landed"]:
        sha = f" at {shown(land['sha'][:7])}" if land["sha"] else ""
        rows.append(("landed", f"[green]yes[/], on {shown(land['into'] or '-')}{sha}"))
    elif land or status != "running":
        why = f" ({shown(land['reason'])})" if land and land["reason"] else ""
        command = f": [bold]{shown(land['command'])}[/]" if land and land["command"] else ""
        rows.append(("landed", f"[yellow]no[/]{why}{command}"))
    return rows


def _commits_table(commits: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", title="Commits", title_justify="left")
    for name in ("Unit", "Task", "Attempt", "SHA", "Subject", "+/−"):
        table.add_column(name, justify="right" if name in ("Task", "Attempt") else "left")
    for c in commits:
        subject = shown(c["subject"] or "")
        if c["author"] == "agent":
            subject += " [dim](agent)[/]"
        table.add_row(
            shown(c["unit"]),
            "-" if c["task"] is None else f"#{c['task']}",
            "-" if c["attempt"] is None else str(c["attempt"]),
            shown(c["sha"][:7]),
            subject,
            _diff_stat(c),
        )
    return table


def _diff_stat(commit: dict[str, Any]) -> str:
    added, removed = commit["insertions"], commit["deletions"]
    if added is None and removed is None:
        return "-"
    return f"[green]+{added or 0}[/] [red]−{removed or 0}[/]"


def _kept_table(kept: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", title="Worktrees kept", title_justify="left")
    for name in ("Unit", "Outcome", "Path", "On disk"):
        table.add_column(name, overflow="fold" if name == "Path" else "ellipsis")
    for k in kept:
        there = Path(k["path"]).is_dir()
        table.add_row(
            shown(k["unit"]),
            f"[{UNIT_STYLE.get(k['status'], 'white')}]{shown(k['status'])}[/]",
            shown(k["path"]),
            "yes" if there else "[dim]gone[/]",
        )
    return table


def _markers(markers: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", title="Stops and resumes", title_justify="left")
    for name in ("Seq", "Time", "What", "Reason"):
        table.add_column(name, justify="right" if name == "Seq" else "left")
    for m in markers:
        what = "[yellow]stopped[/]" if m["type"] == "run.stopped" else "[cyan]resumed[/]"
        table.add_row(str(m["seq"]), _local(m["time"]), what, shown(m["reason"] or "-"))
    return table


def _units_table(units: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold", title="Units", title_justify="left")
    right = ("Tasks done", "Starts", "Attempts", "Tokens", "Cost", "Tools")
    for name in ("Unit", "Outcome", "Tasks done", "Starts", "Started", "Duration", *right[2:]):
        table.add_column(name, justify="right" if name in right else "left")
    table.add_column("Note")
    for u in units:
        note = ""
        if u["blocked_by"]:
            note = f"blocked by {shown(str(u['blocked_by']))}"
        elif u["reason"]:
            note = shown(str(u["reason"]))
        style = UNIT_STYLE.get(u["status"], "white")
        table.add_row(
            shown(u["unit"]),
            f"[{style}]{shown(u['status'])}[/]",
            f"{u['done']}/{u['tasks']}",
            str(u["starts"]),
            _local(u["started_at"]),
            duration_ms(u["duration_ms"]),
            str(u.get("attempts", 0)),
            tokens_count(unit_tokens(u)),
            usd(u.get("cost_usd"), bool(u.get("cost_estimated"))),
            str(u.get("tool_calls", 0)),
            note,
        )
    return table


# -- tasks -------------------------------------------------------------------------


@history_app.command("tasks")
def tasks_cmd(
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="Tasks of this repository (default: the current one)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="How many tasks.")
    ] = (50),
    as_json: JsonOption = False,
) -> None:
    """Each task of this repository across its runs: first-try pass rate, time, tokens, cost,
    latest outcomes; tasks that were flaky come first."""
    repo_path = str(repo_root_of(repo or Path.cwd()))
    with _api() as api:
        found = history.task_table(api, repo=repo_path, limit=limit)
    if as_json:
        print_json(found)
        return
    if not found["tasks"]:
        out.print(f"no tasks of {shown(repo_path)} in the history")
        return
    out.print(tasks_table(found))
    count = len(found["tasks"])
    line = f"{count} of {plural(found['total'], 'task')}"
    if count < found["total"]:
        line += f" · more: [bold]choo history tasks --limit {found['total']}[/]"
    out.print(f"[dim]{line} · outcomes newest first[/]")


# -- events ------------------------------------------------------------------------


@history_app.command("events")
def events_cmd(
    run_id: RunIdArg,
    type: Annotated[
        str | None,
        typer.Option("--type", "-t", help='Only this type, or a prefix ending in "." (task.).'),
    ] = None,
    unit: Annotated[str | None, typer.Option("--unit", "-u", help="Only this unit.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until the run ends.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event a line (NDJSON).")] = (
        False
    ),
) -> None:
    """A run's events in order, every page of them; --follow streams them live."""
    count = 0
    state = history.Follow()
    try:
        with _api() as api:
            run = history.get_run(api, run_id)
            events = (
                history.follow_events(api, run["id"], state, type=type, unit=unit)
                if follow
                else history.iter_events(api, run["id"], type=type, unit=unit)
            )
            for event in events:
                count += 1
                if as_json:
                    sys.stdout.write(to_json(event) + "\n")
                    if follow:
                        sys.stdout.flush()
                else:
                    out.print(_event_line(event), soft_wrap=True)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if as_json:
        return
    ended = state.run or run
    tail = f"[dim]{plural(count, 'event')}"
    if type or unit:
        tail += " matching " + " and ".join(
            f"{k} {shown(v)}" for k, v in (("type", type), ("unit", unit)) if v
        )
    out.print(tail + f" · run {shown(ended['id'])} {shown(ended['status'])}[/]")


def _event_style(kind: str) -> str:
    if kind.endswith((".failed", ".fail")) or kind == "orch.failed":
        return "red"
    if kind.endswith((".completed", ".ok")):
        return "green"
    if kind in ("run.stopped", "unit.blocked", "task.retry"):
        return "yellow"
    if kind == "run.resumed":
        return "cyan"
    return "blue" if kind.startswith("unit.") else "white"


def _event_line(event: dict[str, Any]) -> Text:
    """One event for people; a Text, so no markup in it is read (its data is made visible)."""
    kind = str(event["type"])
    where = visible(event["unit"] or "")
    if event["task"] is not None:
        where += f" #{event['task']}"
    text = Text.assemble(
        (f"{event['seq']:>6} ", "dim"),
        Text.from_markup(_local(event["time"], millis=True) + "  ", style="dim"),
        (f"{visible(kind):<22} ", _event_style(kind)),
        (f"{where:<20} ", "bold"),
        _payload_summary(event.get("payload")),
    )
    if event.get("error"):
        text.append(f"  error: {_clip(visible(str(event['error'])), 200)}", "red")
    return text


def _payload_summary(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "" if payload is None else _clip(visible(to_json(payload)), 160)
    parts = []
    for key, value in payload.items():
        if key == "resume_id":
            continue  # the resume request's retry token, no use to a reader
        text = value if isinstance(value, str) else to_json(value)
        parts.append(f"{visible(str(key))}={_clip(visible(text.replace(chr(10), ' ')), 60)}")
    return _clip(" ".join(parts), 200)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


# -- export / import ---------------------------------------------------------------


OTLP_FROM_ENV = "env"  # `--otlp env`: the endpoint of the OTEL_EXPORTER_OTLP_* variables


@history_app.command("export")
def export_cmd(
    run_id: RunIdArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: standard output).")
    ] = None,
    otlp: Annotated[
        str | None,
        typer.Option(
            "--otlp",
            metavar="URL",
            help="Send the run as an OpenTelemetry trace to this OTLP/HTTP endpoint instead "
            "(a base URL like http://localhost:6006 gets /v1/traces added). `--otlp env`: "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT. "
            "See docs/otlp.md.",
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", metavar="K=V", help="With --otlp: a request header (repeatable)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --otlp: print what was sent as JSON.")
    ] = False,
) -> None:
    """Write a run, its graph and every event as NDJSON (one JSON object a line),
    or with --otlp send it to an OpenTelemetry backend as a trace.

    \b
    Line 1:  {"kind": "run", "format": 1, "id", "repo_path", "status", "started_at",
              "completed_at", "parallelism", "total_units", "completed_units",
              "failed_units", "blocked_units", "resume_count", "dry_run",
              "tasks_dir", "error", "event_count", "last_seq"}
    Line 2:  {"kind": "graph", "nodes", "edges", "levels"}  (when a graph is stored)
    Then:    {"kind": "event", "seq", "time", "type", "unit", "task", "pr",
              "payload", "error"}  for each event, in seq order.

    Times are UTC ISO 8601. A running run is exported as it stands.
    `choo history import FILE` loads such a file into a history.

    \b
    --otlp URL: the run is the root span, each unit a child, each task
    attempt an invoke_agent span, each tool call and validation an
    execute_tool span; IDs come from the run ID and event seqs, so sending
    a run again does not duplicate it. --otlp env takes the endpoint from
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT.
    """
    if otlp is not None or header or as_json:
        _export_otlp(run_id, otlp, header or [], output, as_json)
        return
    with _api() as api:
        if output is None:
            summary = export.write_export(api, run_id, sys.stdout)
        else:
            partial = output.with_name(output.name + ".partial")
            try:
                with open(partial, "w", encoding="utf-8") as f:
                    summary = export.write_export(api, run_id, f)
                partial.replace(output)
            except OSError as exc:
                raise _fail(f"cannot write {output}: {exc}") from None
            finally:
                partial.unlink(missing_ok=True)
    if output is not None:
        err.print(
            f"exported run [bold]{shown(summary.run['id'])}[/] ({plural(summary.events, 'event')}"
            f"{', graph' if summary.graph else ''}) to {shown(str(output))}"
        )


def _export_otlp(
    run_id: str, url: str | None, headers: list[str], output: Path | None, as_json: bool
) -> None:
    if url is None:
        raise _fail("--header and --json go with --otlp URL (the file export takes neither)", 2)
    if output is not None:
        raise _fail("give --output FILE or --otlp URL, not both", 2)
    with _reading():
        to = otlp_export.target(None if url == OTLP_FROM_ENV else url, headers, os.environ)
    with _api() as api:
        run, events = otlp_export.read_run(api, run_id)
    if not as_json:
        err.print(
            f"sending run [bold]{shown(run['id'])}[/] ({plural(len(events), 'event')}) to "
            f"{shown(to.url)}[dim] (from {shown(to.source)})[/]…",
            soft_wrap=True,
        )
    with _reading():
        sent = otlp_export.send(run, events, to)
    if as_json:
        print_json(sent.to_dict())
        return
    out.print(
        f"[green]sent[/] run [bold]{shown(sent.run_id)}[/] as {plural(sent.spans, 'span')} to "
        f"{shown(sent.url)}; trace ID [bold]{sent.trace_id}[/]",
        soft_wrap=True,
    )
    out.print(
        "[dim]sending it again adds no duplicate in a backend that keys spans on their IDs "
        "(docs/otlp.md)[/]"
    )


@history_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A file written by `choo history export`.")],
    as_json: JsonOption = False,
) -> None:
    """Load an exported run into this history (through the daemon).

    A run whose ID is already in the history is left alone: if it is the
    same run, the import says so and succeeds; if it differs, it fails.
    """
    with _reading():
        result = export.import_export(Home.from_env(), file)
    if as_json:
        print_json(result.to_dict())
        return
    run = result.run
    if result.already:
        out.print(
            f"run [bold]{shown(run['id'])}[/] is already in the history with the same content; "
            "nothing to import"
        )
        return
    out.print(
        f"[green]imported[/] run [bold]{shown(run['id'])}[/] ({plural(result.events, 'event')}, "
        f"{_status(run['status'])}) from {shown(str(file))}"
    )
    out.print(f"[dim]see it with: choo history show {shown(run['id'])}[/]")


# -- prune -------------------------------------------------------------------------


@history_app.command("prune")
def prune_cmd(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            min=1,
            help="Runs started more than DAYS ago (default: history.retention_days).",
            metavar="DAYS",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be deleted.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete finished runs (with their events and graphs) started long ago.

    The daemon also does this by itself, at start and daily, for runs older
    than history.retention_days. Running runs are never deleted.
    """
    with _reading():
        days = older_than or _retention_days()
        result = history.prune(Home.from_env(), older_than_days=days, dry_run=dry_run)
    if as_json:
        print_json(result)
        return
    runs = result["runs"]
    verb = "would delete" if dry_run else "deleted"
    events = sum(r["event_count"] for r in runs)
    found = f"{plural(len(runs), 'run')} ({plural(events, 'event')})"
    out.print(f"{verb} {found} started more than {plural(days, 'day')} ago")
    if runs:
        out.print(_pruned_table(runs))
    if dry_run and runs:
        out.print(f"[dim]delete them: choo history prune --older-than {days}[/]")


def _retention_days() -> int:
    config = load_config(repo_root_of(Path.cwd()))
    warn(err, *config.warnings)
    days = int(config["history.retention_days"])
    if days < 1:
        source = config.sources["history.retention_days"]
        raise ConfigError(
            f"history.retention_days is 0 (keep every run; from {source}); "
            "say which runs to delete with --older-than DAYS"
        )
    return days


def _pruned_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold")
    for name in ("ID", "Repository", "Started", "Status", "Events"):
        table.add_column(name, justify="right" if name == "Events" else "left")
    for r in runs:
        table.add_row(
            shown(r["id"]),
            shown(r["repo_path"]),
            _local(r["started_at"]),
            _status(r["status"]),
            f"{r['event_count']:,}",
        )
    return table
