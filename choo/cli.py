"""The ``choo`` command line. Each command parses its options, calls one
library function, and formats the result (``--json`` where scripts want it)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections import deque
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import trio
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from choo import daemonctl
from choo.api import HistoryAPI, HistoryError, HistoryUnavailable
from choo.config import Config, ConfigError
from choo.config import load as load_config
from choo.history_cli import history_app
from choo.orchestrator import gitwork, runstate
from choo.orchestrator.discovery import PlanInvalid
from choo.orchestrator.gitwork import GitError
from choo.orchestrator.graph import build_graph
from choo.orchestrator.planlock import PlanLocked
from choo.orchestrator.runstate import CleanupRefused, Removed
from choo.orchestrator.status import (
    current_plan,
    pending_note,
    plan_status,
    run_json,
    status_table,
)
from choo.runner import RunError, RunRequest, execute, repo_root_of
from choo.term import duration, make_console, plural, print_json, shown, size, to_json, warn
from protocol.home import Home, HomeError, check_home, prepare_home, spool_status
from protocol.settings import default

app = typer.Typer(
    name="choo",
    help="Run a directory of work units in parallel, in dependency order, with a full history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
daemon_app = typer.Typer(help="Start, stop and inspect the history daemon.", no_args_is_help=True)
app.add_typer(daemon_app, name="daemon")
app.add_typer(history_app, name="history")
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

out = make_console()
err = make_console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        print(f"choo {package_version('choo')}")
        raise typer.Exit()


@app.callback()
def _choo(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print choo's version and exit.",
            is_eager=True,
            callback=_show_version,
        ),
    ] = False,
) -> None:
    """Options of ``choo`` itself; the app's help is set above."""


PortOption = Annotated[
    int | None,
    typer.Option(
        "--port", help=f"Web UI port (default {default('daemon.port')}; 0 picks a free one)."
    ),
]
HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help=f"Address the web UI binds (default {default('daemon.host')}). Any other than "
        "127.0.0.0/8, ::1 or localhost opens it to the network (with a warning).",
    ),
]


def _home() -> Home:
    return Home.from_env()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {shown(message, lines=True)}", soft_wrap=True)
    return typer.Exit(code)


@daemon_app.command("start")
def daemon_start(
    port: PortOption = None,
    host: HostOption = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Run in this terminal instead of detaching.")
    ] = False,
    set_aside_corrupt: Annotated[
        bool,
        typer.Option(
            "--set-aside-corrupt",
            help="If history.db is not a valid SQLite database, rename it (with its -wal "
            "and -shm) to history.db.corrupt-<UTC time> and start a new history.",
        ),
    ] = False,
) -> None:
    """Start the daemon (returns once it answers).

    Its port, host and retention come from the user's configuration
    (daemon.port, daemon.host, history.retention_days; see `choo config show`),
    never from a repository's .choo.yaml.
    """
    home = _home()
    settings = dataclasses.replace(
        _daemon_settings(port, host), set_aside_corrupt=set_aside_corrupt
    )
    if foreground:
        try:
            prepare_home(home)
        except HomeError as exc:
            raise _fail(f"could not start the daemon: {exc}", 2) from None
        status = daemonctl.query_status(home)
        if status is not None:
            raise _fail(
                f"a daemon is already running (pid {status['pid']}); "
                "stop it first with `choo daemon stop`",
                2,
            )
        argv = daemonctl.daemon_command(home, settings, log_file=True)
        # Become the daemon, so that Ctrl-C and signals reach it directly.
        os.execve(argv[0], argv, daemonctl.daemon_env(settings))
    try:
        result = daemonctl.start(home, settings)
    except daemonctl.DaemonControlError as exc:
        raise _fail(f"could not start the daemon: {exc}", 2) from None
    s = result.status
    served = daemonctl.port_conflict(s, port) if result.already_running else None
    if served is not None:
        raise _fail(
            f"a daemon is already running (pid {s['pid']}) with its web UI on port {served}, "
            f"not {port}; to move it: `choo daemon restart --port {port}`",
            2,
        )
    verb = "already running" if result.already_running else "started"
    out.print(f"[green]●[/] daemon {verb}: pid {s['pid']}, web UI {s['web']}")
    _print_login(home, s)
    if s.get("set_aside") and not result.already_running:
        warn(
            err,
            f"{s['database']} was not a valid SQLite database: it was moved to "
            f"{s['set_aside']} (with its -wal and -shm, if any); a new history starts",
        )
    _warn_exposed(s)


def _warn_exposed(status: dict[str, Any]) -> None:
    """The daemon's warning when its web UI binds a non-loopback address."""
    if status.get("exposed"):
        warn(err, status["exposed"])


def _daemon_settings(port: int | None, host: str | None = None) -> daemonctl.DaemonSettings:
    config = _load_config(repo_root_of(Path.cwd()), {"daemon.port": port, "daemon.host": host})
    return daemonctl.DaemonSettings.from_config(config)


@daemon_app.command("stop")
def daemon_stop() -> None:
    """Stop the daemon gracefully (everything received is committed first)."""
    try:
        pid = daemonctl.stop(_home())
    except daemonctl.DaemonControlError as exc:
        raise _fail(str(exc)) from None
    if pid is None:
        out.print("no daemon is running")
        return
    out.print(f"daemon stopped (pid {pid})")


@daemon_app.command("restart")
def daemon_restart(port: PortOption = None, host: HostOption = None) -> None:
    """Stop the daemon if it runs, then start it."""
    home = _home()
    settings = _daemon_settings(port, host)
    try:
        daemonctl.stop(home)
    except daemonctl.DaemonControlError as exc:
        raise _fail(str(exc)) from None
    try:
        result = daemonctl.start(home, settings)
    except daemonctl.DaemonControlError as exc:
        raise _fail(f"could not start the daemon: {exc}", 2) from None
    out.print(
        f"[green]●[/] daemon restarted: pid {result.status['pid']}, web UI {result.status['web']}"
    )
    _warn_exposed(result.status)
    _print_login(home, result.status)


@daemon_app.command("status")
def daemon_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether the daemon runs, and its figures. Exits 1 when none runs."""
    home = _home()
    try:
        check_home(home)
    except HomeError as exc:
        raise _fail(str(exc), 2) from None
    probe = daemonctl.probe(home)
    if probe.busy is not None:
        _print_busy(home, probe, as_json)
        return
    status = probe.status
    if status is None:
        if as_json:
            print(to_json({"running": False, "home": str(home.root)}))
        else:
            out.print(f"[red]●[/] no daemon is running for {home.root}")
            waiting = spool_status(home.spool)["files"]
            if waiting:
                out.print(
                    f"  [yellow]{plural(waiting, 'spool file')}[/] of history "
                    f"{'waits' if waiting == 1 else 'wait'} to be imported by the next daemon"
                )
            out.print("  start one with: [bold]choo daemon start[/]")
        raise typer.Exit(1)
    login = daemonctl.login_url(home, status["web"]) if status.get("web") else None
    if as_json:
        print_json({"running": True, **status, "login": login})
        return
    out.print(_status_table(status))
    _warn_exposed(status)
    _print_login(home, status)


def _print_login(home: Home, status: dict[str, Any]) -> None:
    """The URL that logs a browser in to the web UI (on one line, for the terminal to wrap)."""
    if status.get("web"):
        out.print(f"  log in: {daemonctl.login_url(home, status['web'])}", soft_wrap=True)


@daemon_app.command("token")
def daemon_token(
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Make a new token: the running daemon refuses the old one at once "
            "(browsers log in again with the new URL).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the URL that logs a browser in to the web UI (the token is in CHOO_HOME/web.token)."""
    home = _home()
    try:
        daemonctl.web_token(home, rotate=rotate)
    except daemonctl.DaemonControlError as exc:
        raise _fail(str(exc), 2) from None
    status = daemonctl.query_status(home) or {}
    web = status.get("web")
    login = daemonctl.login_url(home, web) if web else None
    if as_json:
        shown = {"login": login, "web": web, "token_file": str(home.token), "rotated": rotate}
        print(to_json(shown))
        return
    if rotate:
        out.print(f"a new web token is in {escape(str(home.token))}; the old one no longer works")
    if login:
        out.print(login, soft_wrap=True)
    else:
        out.print(
            "no daemon is running: start it with [bold]choo daemon start[/], "
            "which prints the login URL"
        )


def _print_busy(home: Home, probe: daemonctl.Probe, as_json: bool) -> None:
    """A daemon that runs but has no connection free to answer us."""
    if as_json:
        shown = {"running": True, "busy": True, "pid": probe.pid, "home": str(home.root)}
        print(to_json({**shown, "socket": str(home.socket), "message": probe.busy}))
        return
    pid = f"pid {probe.pid}" if probe.pid is not None else "pid unknown"
    out.print(f"[yellow]●[/] choo daemon running ({pid}) but busy: {escape(probe.busy or '')}")
    out.print("  its figures are not available now; try again in a moment")


def _export_rows(export: dict[str, Any]) -> list[tuple[str, str]]:
    """Continuous OTLP export: where to, the outbox, and its latest error."""
    waiting = export.get("outbox")
    if not export.get("endpoint") and not waiting:
        return []
    rows = [("OTLP export", export.get("endpoint") or "off (export.otlp.endpoint is not set)")]
    if waiting is not None:
        rows.append(("OTLP outbox", f"{plural(waiting, 'run')} to send, {export['sent']} sent"))
    if export.get("last_error"):
        retry = f"; next try {export['next_try_at']}" if export.get("next_try_at") else ""
        when = f"at {export['last_error_at']}{retry}"
        rows.append(("[red]export error[/]", f"{export['last_error']} ({when})"))
    return rows


def _status_table(s: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.title = "[green]●[/] choo daemon running"
    table.title_justify = "left"
    rows = [
        ("pid", str(s["pid"])),
        ("version", s["version"]),
        ("uptime", duration(int(s["uptime_s"]))),
        ("web UI", s["web"] or "-"),
        ("socket", s["socket"]),
        ("database", f"{s['database']} ({size(s['database_bytes'])})"),
        ("clients", str(s["clients"])),
        ("runs stored", f"{s['runs_stored']:,}"),
        ("events stored", f"{s['events_stored']:,}"),
    ]
    spool = s.get("spool") or {}
    if spool.get("files"):
        rows.append(
            (
                "[yellow]spool[/]",
                f"{plural(spool['files'], 'file')} pending import ({size(spool['bytes'])})",
            )
        )
    if s.get("write_error"):
        rows.append(("[red]write error[/]", s["write_error"]))
    rows += _export_rows(s.get("export") or {})
    for key, value in rows:
        table.add_row(key, value)
    return table


@daemon_app.command("logs")
def daemon_logs(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many last lines.")] = 50,
) -> None:
    """Print the daemon's log."""
    path = _home().log
    if not path.exists():
        raise _fail(f"no daemon log yet at {path}; start the daemon with `choo daemon start`")
    if follow:
        _follow(path, lines)
        return
    for line in daemonctl.tail(path, lines):
        print(line)


def _follow(path: os.PathLike[str], lines: int) -> None:
    # One open file for the last lines and what follows, so that no line written
    # in between is lost; flushed at once, since stdout is often a pipe.
    with open(path, encoding="utf-8", errors="replace") as f:
        sys.stdout.writelines(deque(f, maxlen=lines))
        sys.stdout.flush()
        try:
            while True:
                line = f.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return


# -- run / resume / status -----------------------------------------------------

DEFAULT_TASKS_DIR = Path("specs/tasks")
InPlaceOption = Annotated[
    bool,
    typer.Option(
        "--in-place",
        help="Run every unit in the main working tree (no worktrees; isolation: none).",
    ),
]
LandOption = Annotated[
    bool | None,
    typer.Option(
        "--land/--no-land",
        help="Fast-forward the branch checked out at the start to the run's branch "
        "when the run completes (git.land).",
        show_default=False,
    ),
]


def _load_config(repo_root: Path | None, flags: dict[str, Any]) -> Config:
    try:
        config = load_config(repo_root).apply_flags(flags)
    except ConfigError as exc:
        raise _fail(f"configuration: {exc}", 2) from None
    warn(err, *config.warnings)
    return config


def _execute(request: RunRequest) -> None:
    try:
        outcome = trio.run(execute, request, out)
    except (RunError, PlanLocked) as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except HomeError as exc:  # the plan's lock lives in CHOO_HOME
        raise _fail(f"could not lock the plan, so nothing was run: {exc}", 2) from None
    except KeyboardInterrupt:
        # Ctrl-C before the workers started (a stop later is handled and recorded).
        raise _fail("interrupted before any work started", 130) from None
    raise typer.Exit(outcome.exit_code)


@app.command("run")
def run_cmd(
    tasks_dir: Annotated[
        Path, typer.Argument(help="Folder of units (default: specs/tasks).")
    ] = DEFAULT_TASKS_DIR,
    parallelism: Annotated[
        int | None, typer.Option("-p", "--parallelism", help="Units at once (default 4).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and record, execute nothing.")
    ] = False,
    unit: Annotated[
        str | None, typer.Option("--unit", help="Only this unit (and what it needs).")
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="claude, codex or command.")
    ] = None,
    no_daemon: Annotated[
        bool, typer.Option("--no-daemon", help="Fully isolated: no daemon, no history.")
    ] = False,
    no_history: Annotated[
        bool, typer.Option("--no-history", help="Use the daemon but record nothing.")
    ] = False,
    port: PortOption = None,
    in_place: InPlaceOption = False,
    land: LandOption = None,
) -> None:
    """Run the units of TASKS_DIR in dependency order, recording the run."""
    if not tasks_dir.is_dir():
        raise _fail(
            f"{tasks_dir} is not a folder of units; pass the tasks folder, "
            "e.g. `choo run specs/tasks`",
            2,
        )
    config = _load_config(
        repo_root_of(tasks_dir),
        {
            "parallelism": parallelism,
            "provider.name": provider,
            "daemon.port": port,
            "isolation": "none" if in_place else None,
            "git.land": land,
        },
    )
    record = config["history.enabled"] and not no_history
    _execute(
        RunRequest(
            tasks_dir=tasks_dir,
            config=config,
            home=_home(),
            dry_run=dry_run,
            unit=unit,
            use_daemon=not no_daemon,
            record=record,
            port=port,
        )
    )


@app.command("resume")
def resume_cmd(
    run_id: Annotated[
        str | None,
        typer.Argument(
            help="Run to continue (default: this repository's latest run, if it "
            "stopped or failed). A unique prefix is enough."
        ),
    ] = None,
    parallelism: Annotated[
        int | None, typer.Option("-p", "--parallelism", help="Units at once.")
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="claude, codex or command.")
    ] = None,
    take_over: Annotated[
        bool,
        typer.Option(
            "--take-over",
            help="Resume a run the daemon still waits for (its orchestrator vanished "
            "and the grace period has not ended).",
        ),
    ] = False,
    land: LandOption = None,
) -> None:
    """Continue a stopped or failed run: same run ID, completed tasks skipped."""
    home = _home()
    try:
        with HistoryAPI.connect(home) as api:
            run = _find_resumable(api, run_id)
        if run["status"] == "running":
            _check_take_over(run, daemonctl.query_status(home), take_over)
    except (HistoryUnavailable, HistoryError) as exc:
        raise _fail(str(exc)) from None
    tasks_dir = Path(run["tasks_dir"] or "")
    if not run["tasks_dir"] or not tasks_dir.is_dir():
        raise _fail(
            f"run {run['id']} was made from {run['tasks_dir']!r}, which is not a "
            "folder any more; nothing to resume",
            2,
        )
    # The run knows its repository; the folder resume is called from does not matter.
    repo_root = Path(run["repo_path"])
    config = _load_config(
        repo_root,
        {
            "parallelism": parallelism or run["parallelism"],
            "provider.name": provider,
            "git.land": land,
        },
    )
    _execute(
        RunRequest(tasks_dir=tasks_dir, config=config, home=home, resume=run, repo_root=repo_root)
    )


def _find_resumable(api: HistoryAPI, run_id: str | None) -> dict[str, Any]:
    """The run to resume: the one named, else the repository's latest (never an older one)."""
    if run_id is None:
        repo = str(repo_root_of(Path.cwd()))
        runs = [r for r in api.list_runs(repo=repo, limit=20)["runs"] if not r.get("dry_run")]
        if not runs:
            raise HistoryError(
                404,
                "no_run",
                f"no run of {repo} to resume; see `choo history list --all`, or name a run: "
                "`choo resume RUN_ID`",
            )
        latest = runs[0]  # newest first
        if latest["status"] == "completed":
            raise HistoryError(
                409,
                "completed",
                f"the latest run of {repo}, {latest['id']}, completed: nothing to resume. "
                "To resume an older run, name it: `choo resume RUN_ID` "
                "(see `choo history list`)",
            )
        run_id = latest["id"]
    run = api.get_run(run_id)
    if run.get("dry_run"):
        raise HistoryError(409, "dry_run", f"run {run['id']} was a dry run; nothing to resume")
    if run["status"] == "completed":
        raise HistoryError(409, "completed", f"run {run['id']} completed; nothing to resume")
    return run


def _check_take_over(run: dict[str, Any], status: dict[str, Any] | None, take_over: bool) -> None:
    """A run still marked running may be resumed only once nobody runs it."""
    active = ((status or {}).get("active_runs") or {}).get(run["id"])
    if active is not None and active.get("client"):
        raise HistoryError(
            409,
            "running",
            f"run {run['id']} is still running: its orchestrator ({active['client']}) is "
            "connected to the daemon. Stop it first (Ctrl-C in its terminal), then resume.",
        )
    if take_over:
        return
    if active is not None and active.get("waiting_until"):
        until = active["waiting_until"]
        raise HistoryError(
            409,
            "waiting",
            f"run {run['id']} is still marked running: its orchestrator went away and the "
            f"daemon waits for it to come back until {until}. Resume after that, or take "
            f"over now: `choo resume {run['id']} --take-over`",
        )
    raise HistoryError(
        409,
        "running",
        f"run {run['id']} is marked running, but no orchestrator is connected for it. "
        f"If it is not running anywhere, take it over: `choo resume {run['id']} --take-over`",
    )


@app.command("status")
def status_cmd(
    tasks_dir: Annotated[Path, typer.Argument(help="Folder of units.")] = DEFAULT_TASKS_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the units and tasks of TASKS_DIR with their status.

    While a run of TASKS_DIR has not landed, the statuses are those on its run branch.
    """
    config = _load_config(repo_root_of(tasks_dir), {})
    try:
        plan, run = current_plan(_home(), tasks_dir, max_bytes=config["plan.max_file_bytes"])
    except PlanInvalid as exc:
        raise _fail(f"the plan in {tasks_dir} has problems:\n{exc}", 2) from None
    except GitError as exc:
        raise _fail(str(exc)) from None
    warn(err, *map(str, plan.warnings))
    graph = build_graph(plan)
    if as_json:
        print_json({**plan_status(plan, graph), **({"run": run_json(run)} if run else {})})
        return
    if run is not None:
        out.print(shown(pending_note(run)))
    out.print(status_table(plan, graph))


# -- cleanup ---------------------------------------------------------------------


@app.command("cleanup")
def cleanup_cmd(
    run_id: Annotated[
        str | None, typer.Argument(help="One run to clean up (default: every landed run).")
    ] = None,
    every: Annotated[
        bool,
        typer.Option("--all", help="Every finished run, landed or not, run branches included."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove the work trees and branches that finished runs left in this repository.

    A run branch that has not landed is kept unless --all: it holds the run's work.
    """
    repo = gitwork.find_repo(Path.cwd())
    if repo is None:
        raise _fail(
            f"{Path.cwd()} is not in a git repository: run choo cleanup inside the "
            "repository whose runs it should clean up",
            2,
        )
    try:
        removed = runstate.cleanup(_home(), repo, run_id, all=every, dry_run=dry_run)
    except CleanupRefused as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except GitError as exc:
        raise _fail(str(exc)) from None
    kept = [] if every else runstate.kept_runs(_home(), repo)
    if as_json:
        items = [dataclasses.asdict(item) for item in removed]
        kept_items = [{"run_id": state.run_id, "branch": state.branch} for state in kept]
        print_json({"dry_run": dry_run, "removed": items, "kept": kept_items})
        return
    if removed:
        out.print(_removed_table(removed, dry_run))
    else:
        out.print(_nothing_to_clean(repo.root, run_id, every), soft_wrap=True)
    for state in kept:
        out.print(_kept_note(state), soft_wrap=True)


def _nothing_to_clean(root: Path, run_id: str | None, every: bool) -> str:
    if run_id is not None:
        return f"nothing to clean up: run {escape(run_id)} left nothing behind"
    if every:
        return f"nothing to clean up: no finished run of {escape(str(root))}"
    return (
        f"nothing to clean up: no finished run of {escape(str(root))} has landed; "
        "`choo cleanup --all` also removes the runs that have not (and their branches)"
    )


def _kept_note(state: runstate.RunState) -> str:
    branch = escape(state.branch)
    return (
        f"kept: run {escape(state.run_id)} has not landed; its work is on {branch} "
        f"(take it: `git merge {branch}`; drop it: `choo cleanup --all`)"
    )


def _removed_table(removed: list[Removed], dry_run: bool) -> Table:
    runs = len({item.run_id for item in removed})
    verb = "would remove (dry run)" if dry_run else "removed"
    title = f"{verb}: {plural(len(removed), 'item')} of {plural(runs, 'run')}"
    table = Table(header_style="bold", title=title, title_justify="left")
    for name in ("Run", "What", "Name"):
        table.add_column(name)
    for item in removed:
        table.add_row(escape(item.run_id), item.kind, escape(item.name))
    return table


# -- config ----------------------------------------------------------------------


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective configuration here, and where each value came from."""
    config = _load_config(repo_root_of(Path.cwd()), {})
    if as_json:
        files = [{"path": str(path), "found": found} for path, found in config.files]
        print_json({"files": files, "keys": config.explain()})
        return
    out.print(_config_table(config))
    for path, found in config.files:
        state = "read" if found else "[dim]not found[/]"
        out.print(f"  {escape(str(path))}: {state}")
    out.print("  [dim]CHOO_* environment variables and flags override the files[/]")
    out.print(
        "  [dim]scope user: set only in the user config, CHOO_* variables and flags; "
        "a repository's .choo.yaml may not (and a non-loopback daemon.host is taken "
        "only from the user config or --host)[/]"
    )


def _config_table(config: Config) -> Table:
    table = Table(header_style="bold", title="choo configuration", title_justify="left")
    for name in ("Key", "Value", "Source", "Scope", "Meaning"):
        table.add_column(name)
    for row in config.explain():
        value = row["value"]
        shown = "-" if value is None else to_json(value) if not isinstance(value, str) else value
        if isinstance(value, dict):  # a table (prices): too wide here; --json lists it
            shown = f"{len(value)} entries (--json lists them)"
        source = row["source"]
        table.add_row(
            row["key"],
            escape(shown),
            f"[dim]{source}[/]" if source == "default" else escape(source),
            "[dim]repo[/]" if row["scope"] == "repo" else "[bold]user[/]",
            f"[dim]{escape(row['help'])}[/]",
        )
    return table


# -- help ------------------------------------------------------------------------


def _untyped_flags(params: list[Any]) -> list[Any]:
    # typer's rich help prints a type after every option, "<bool>" for a flag
    # that takes no value at all; an empty metavar prints nothing there.
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


def _plain_flags(typer_app: typer.Typer) -> None:
    """Every command and group under ``typer_app`` shows its flags without a type."""
    typer_app.info.cls = _Group
    for command in typer_app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = _Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_flags(group.typer_instance)


_plain_flags(app)


def main() -> None:
    app()
