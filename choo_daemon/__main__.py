"""Entry point of the daemon process: ``python -m choo_daemon``.

``choo daemon start`` runs this detached, with output going to the log
file; ``--foreground`` runs it attached to the terminal. Continuous OTLP
export is configured in its environment (``choo_daemon.outbox``). Exit codes: 0 after
a graceful stop, 3 when another daemon already holds this CHOO_HOME, 1 on
any other failure to start.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if __name__ == "__main__" and not os.environ.get("PYTHONMALLOC") and sys.platform == "linux":
    # On the C allocator (choo_daemon/memory.py says why; protocol/malloc.py
    # names these variables). ``choo daemon start`` sets it; a daemon started
    # otherwise starts again with it, before importing anything else (the
    # exec starts afresh: every import before it would be paid twice).
    again = {**os.environ, "PYTHONMALLOC": "malloc", "CHOO_DAEMON_SYSTEM_MALLOC": "1"}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], again)

from choo_daemon.dbwire import Started, start_process
from choo_daemon.logformat import OneLineFormatter
from choo_daemon.pidfile import AlreadyRunning, hold_pidfile
from protocol.home import Home, HomeError, prepare_home, private_umask
from protocol.settings import default

if TYPE_CHECKING:
    import trio

    from choo_daemon.daemon import Daemon, DaemonOptions

EXIT_ALREADY_RUNNING = 3
log = logging.getLogger("choo.daemon")


def command_line() -> argparse.ArgumentParser:
    """The daemon's command line."""
    parser = argparse.ArgumentParser(prog="choo-daemon", description=__doc__)
    parser.add_argument("--home", help="CHOO_HOME folder (default: $CHOO_HOME or ~/.choo)")
    # Defaults as choo's configuration has them: one table, protocol.settings.
    parser.add_argument("--host", default=default("daemon.host"))
    parser.add_argument(
        "--port", type=int, default=default("daemon.port"), help="web port (0: any free port)"
    )
    parser.add_argument(
        "--retention-days",
        type=int,
        default=default("history.retention_days"),
        help="delete runs started longer ago than this (0: keep all)",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=30.0,
        help="how long a run whose orchestrator vanished waits for it to come back "
        "before it is marked stopped",
    )
    parser.add_argument(
        "--set-aside-corrupt",
        action="store_true",
        help="if history.db is not a valid SQLite database, rename it (and its -wal and "
        "-shm) to history.db.corrupt-<UTC time> and start a new history",
    )
    parser.add_argument(
        "--export-retry-max",
        type=float,
        help="the longest pause, in seconds, between two tries to send the OTLP outbox "
        "(default: 300)",
    )
    parser.add_argument(
        "--export-timeout",
        type=float,
        help="seconds one send of a run to the OTLP backend may take (default: 10)",
    )
    parser.add_argument("--log-file", help="append the log to this file as well as stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = command_line().parse_args(argv)

    # Before anything is created: the database, its -wal/-shm and the log
    # are the user's alone (0600).
    private_umask()
    home = Home.from_env(args.home)
    _setup_logging(None)  # the log file only once CHOO_HOME is known to be usable
    problem = home.socket_path_problem()
    if problem:
        log.error("%s", problem)
        return 1
    try:
        prepare_home(home)
    except HomeError as exc:
        log.error("%s", exc)
        return 1
    if args.log_file:
        _setup_logging(Path(args.log_file))
    # The database process first, so that it loads while this one imports
    # the rest (trio, the daemon): start to socket-ready is the longer of the
    # two, not their sum. Until asked to, it opens nothing; if we turn out
    # not to be the daemon, it ends as we do.
    started = start_process(home.database)
    from choo_daemon.daemon import DaemonOptions
    from choo_daemon.outbox import ExportConfigError, target_from_env

    try:
        # In the environment, not on the command line: a header may hold a key.
        export = target_from_env(os.environ)
    except ExportConfigError as exc:
        log.error("%s", exc)
        return 1

    try:
        with hold_pidfile(home.pidfile):
            options = DaemonOptions(
                home=home,
                host=args.host,
                port=args.port,
                retention_days=args.retention_days or None,
                grace_seconds=args.grace_seconds,
                set_aside_corrupt=args.set_aside_corrupt,
                export=export,
            )
            if args.export_retry_max is not None:
                options = replace(options, export_retry_max=args.export_retry_max)
            if args.export_timeout is not None:
                options = replace(options, export_timeout=args.export_timeout)
            return _serve(options, started)
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return EXIT_ALREADY_RUNNING


def _serve(options: DaemonOptions, started: Started) -> int:
    """Run the daemon: 0 after a graceful stop, 1 (logged) when it could not go on."""
    import trio

    from choo_daemon.dblink import DbProcessGone
    from choo_daemon.store import StoreError

    failed = False
    # trio's nurseries wrap a failure in (nested) exception groups.
    try:
        trio.run(_run, options, started)
    except* StoreError as group:
        failed = _log_each(group, "cannot open the history database: %s")
    except* OSError as group:
        failed = _log_each(group, "cannot start: %s")
    except* DbProcessGone as group:
        failed = _log_each(group, "stopping: %s; nothing acked is lost, start the daemon again")
    return 1 if failed else 0


def _log_each(group: BaseExceptionGroup[BaseException], message: str) -> bool:
    """Log each exception of ``group``, however deep, with ``message``; True."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            _log_each(exc, message)
        else:
            log.error(message, exc)
    return True


async def _run(options: DaemonOptions, started: Started) -> None:
    import trio

    from choo_daemon.daemon import Daemon
    from choo_daemon.dblink import DbProcess
    from choo_daemon.memory import settle

    daemon = Daemon(options, DbProcess(started))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, daemon)
            await nursery.start(_serve_then_stop, daemon, nursery.cancel_scope)
            settle()


async def _serve_then_stop(
    daemon: Daemon, scope: trio.CancelScope, *, task_status: trio.TaskStatus[Daemon]
) -> None:
    await daemon.serve(task_status=task_status)
    scope.cancel()  # the signal watcher


async def _watch_signals(signals: AsyncIterator[int], daemon: Daemon) -> None:
    async for signum in signals:
        log.info("received %s", signal.Signals(signum).name)
        daemon.request_shutdown()


def _setup_logging(log_file: Path | None) -> None:
    fmt = OneLineFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(fmt)
    root = logging.getLogger("choo")
    root.handlers[:] = handlers
    root.setLevel(logging.INFO)
    # hypercorn logs through choo.web; keep its chatter at warnings.
    logging.getLogger("choo.web").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
