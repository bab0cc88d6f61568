"""The ``choo`` command line. Each command parses its options, calls one
library function, and formats the result (``--json`` where scripts want it)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from choo import daemonctl
from protocol.home import Home

app = typer.Typer(
    name="choo",
    help="Run a directory of work units in parallel, in dependency order, with a full history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
daemon_app = typer.Typer(help="Start, stop and inspect the history daemon.", no_args_is_help=True)
app.add_typer(daemon_app, name="daemon")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

PortOption = Annotated[
    int | None, typer.Option("--port", help="Web UI port (default 8080; 0 picks a free one).")
]


def _home() -> Home:
    return Home.from_env()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


@daemon_app.command("start")
def daemon_start(
    port: PortOption = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Run in this terminal instead of detaching.")
    ] = False,
) -> None:
    """Start the daemon (returns once it answers)."""
    home = _home()
    if foreground:
        status = daemonctl.query_status(home)
        if status is not None:
            raise _fail(f"a daemon is already running (pid {status['pid']}); "
                        "stop it first with `choo daemon stop`")
        argv = daemonctl.daemon_command(home, port, log_file=True)
        home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Become the daemon, so that Ctrl-C and signals reach it directly.
        os.execv(argv[0], argv)
    try:
        result = daemonctl.start(home, port=port)
    except daemonctl.DaemonControlError as exc:
        raise _fail(f"could not start the daemon: {exc}") from None
    s = result.status
    verb = "already running" if result.already_running else "started"
    out.print(f"[green]●[/] daemon {verb}: pid {s['pid']}, web UI {s['web']}")


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
def daemon_restart(port: PortOption = None) -> None:
    """Stop the daemon if it runs, then start it."""
    home = _home()
    try:
        daemonctl.stop(home)
        result = daemonctl.start(home, port=port)
    except daemonctl.DaemonControlError as exc:
        raise _fail(str(exc)) from None
    out.print(f"[green]●[/] daemon restarted: pid {result.status['pid']}, "
              f"web UI {result.status['web']}")


@daemon_app.command("status")
def daemon_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether the daemon runs, and its figures. Exits 1 when none runs."""
    home = _home()
    status = daemonctl.query_status(home)
    if status is None:
        if as_json:
            print(json.dumps({"running": False, "home": str(home.root)}))
        else:
            out.print(f"[red]●[/] no daemon is running for {home.root}")
            out.print("  start one with: [bold]choo daemon start[/]")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps({"running": True, **status}, indent=2))
        return
    out.print(_status_table(status))


def _status_table(s: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.title = "[green]●[/] choo daemon running"
    table.title_justify = "left"
    rows = [
        ("pid", str(s["pid"])),
        ("version", s["version"]),
        ("uptime", _duration(s["uptime_s"])),
        ("web UI", s["web"] or "-"),
        ("socket", s["socket"]),
        ("database", f"{s['database']} ({_size(s['database_bytes'])})"),
        ("clients", str(s["clients"])),
        ("runs stored", f"{s['runs_stored']:,}"),
        ("events stored", f"{s['events_stored']:,}"),
    ]
    if s.get("write_error"):
        rows.append(("[red]write error[/]", s["write_error"]))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@daemon_app.command("logs")
def daemon_logs(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many last lines.")] = 50,
) -> None:
    """Print the daemon's log."""
    path = _home().log
    if not path.exists():
        raise _fail(f"no daemon log yet at {path}; start the daemon with `choo daemon start`")
    for line in daemonctl.tail(path, lines):
        print(line)
    if follow:
        _follow(path)


def _follow(path: os.PathLike[str]) -> None:
    with open(path, encoding="utf-8", errors="replace") as f:
        f.seek(0, os.SEEK_END)
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


def main() -> None:
    app()
